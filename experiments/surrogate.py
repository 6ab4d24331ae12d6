"""Flax surrogates on jaxloop datasets: data, training, held-out accuracy,
surrogate-guided search.

    python experiments/surrogate.py data   [--out DIR]     # Parquet corpus
    python experiments/surrogate.py train  [--out DIR] [--steps N]
    python experiments/surrogate.py search [--out DIR] [--seconds S]

``data`` writes one file per (architecture, layer) pair of Timeloop's
example designs (``example_designs/top.yaml.jinja2`` with the
``layer_shapes/`` layers): the training architectures (eyeriss_like,
simba_like) on the training layers (uniform and biased rows) and on the
held-out layers (uniform rows), and an architecture never trained on
(simple_weight_stationary) on the held-out layers.  ``train`` fits the
surrogate on the training pairs and writes
``experiments/results/surrogate_accuracy.md`` (Spearman and MAPE per
split) and the checkpoint; ``search`` compares surrogate-guided gradient
search with jaxloop's exact-gradient search and the default mapper at
equal wall time on the held-out layers
(``experiments/results/surrogate_search.md``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))
TOP = REFERENCE / "example_designs" / "top.yaml.jinja2"
RESULTS = ROOT / "experiments" / "results"

TRAIN_ARCHS = ("eyeriss_like", "simba_like")
UNSEEN_ARCHS = ("simple_weight_stationary",)
TRAIN_LAYERS = ("resnet18/00", "resnet18/01", "resnet18/05", "resnet18/07",
                "resnet18/10", "resnet18/11", "resnet18/16", "resnet18/20",
                "vgg16/04", "alexnet/1")
HELDOUT_LAYERS = ("resnet18/12", "resnet18/15", "vgg16/10", "alexnet/3",
                  "alexnet/6")
UNIFORM_ROWS = 65536
BIASED_ROWS = 16384
HELDOUT_ROWS = 32768


def load(arch: str, layer: str):
  import jaxloop
  variables = {"architecture": arch,
               "problem": f"../layer_shapes/{layer}.yaml"}
  return jaxloop.load(str(TOP), variables=variables), variables


def pairs():
  """``(arch, layer, [(sampler, rows)])`` of the corpus."""
  for arch in TRAIN_ARCHS:
    for layer in TRAIN_LAYERS:
      yield arch, layer, [("uniform", UNIFORM_ROWS),
                          ("biased", BIASED_ROWS)]
    for layer in HELDOUT_LAYERS:
      yield arch, layer, [("uniform", HELDOUT_ROWS)]
  for arch in UNSEEN_ARCHS:
    for layer in HELDOUT_LAYERS:
      yield arch, layer, [("uniform", HELDOUT_ROWS)]


def stage_data(out: Path) -> None:
  from jaxloop.research.dataset import write_dataset
  for arch, layer, parts in pairs():
    wl, variables = load(arch, layer)
    for sampler, rows in parts:
      t0 = time.perf_counter()
      info = write_dataset(wl, out, count=rows, seed=0, sampler=sampler,
                           chunk=min(rows, 65536), arch=arch, layer=layer,
                           variables=variables)
      print(f"{arch:26s} {layer:12s} {sampler:8s} {info.rows:6d} rows "
            f"{info.valid / info.rows:6.1%} valid "
            f"{time.perf_counter() - t0:5.1f} s", flush=True)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("stage", choices=("data", "train", "search"))
  ap.add_argument("--out", default=str(Path(tempfile.gettempdir())
                                       / "jaxloop-surrogate"),
                  help="the dataset directory (default: a temp folder)")
  ap.add_argument("--steps", type=int, default=4000)
  ap.add_argument("--seconds", type=float, default=20.0)
  args = ap.parse_args()
  from jaxloop import runtime
  runtime.use_compilation_cache()
  out = Path(args.out)
  if args.stage == "data":
    stage_data(out)
  elif args.stage == "train":
    stage_train(out, args.steps)
  else:
    stage_search(out, args.seconds)


if __name__ == "__main__":
  main()
