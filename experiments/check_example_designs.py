"""Timeloop's example designs end to end, through their template.

For each design of ``example_designs/`` and each layer file given, runs
``jaxloop map example_designs/top.yaml.jinja2 --var architecture=DESIGN
--var problem=LAYER --budget N``, checks it wrote every output file, then
runs ``jaxloop model`` on the written ``parsed-processed-input.yaml``,
``map.yaml``, ``ERT.yaml`` and ``ART.yaml`` and checks its ``stats.json``
equals the mapper's.  Prints one row per run.

    python experiments/check_example_designs.py [--budget 2000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))
DESIGNS = ("eyeriss_like", "simba_like", "simple_output_stationary",
           "simple_weight_stationary")
# ResNet-18 3x3, VGG-16, a stride-2 ResNet-18 layer, a GPT-2 GEMM.
LAYERS = ("resnet18/03.yaml", "vgg16/00.yaml", "resnet18/05.yaml",
          "gpt2/000.yaml")
OUTPUTS = ("stats.json", "stats.txt", "map.yaml", "map.txt",
           "parsed-processed-input.yaml", "ERT.yaml", "ART.yaml")


def jaxloop(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "jaxloop", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=1800)


def check(design: str, layer: str, budget: int, out: Path) -> str:
  top = REFERENCE / "example_designs" / "top.yaml.jinja2"
  t0 = time.perf_counter()
  run = jaxloop("map", str(top), "--var", f"architecture={design}", "--var",
                f"problem=../layer_shapes/{layer}", "--budget", str(budget),
                "-o", str(out / "map"))
  wall = time.perf_counter() - t0
  if run.returncode:
    return f"map exit {run.returncode}: {run.stderr.strip()[-300:]}"
  missing = [f for f in OUTPUTS if not (out / "map" / f).is_file()]
  if missing:
    return f"missing {missing}"
  files = [str(out / "map" / f) for f in
           ("parsed-processed-input.yaml", "map.yaml", "ERT.yaml", "ART.yaml")]
  again = jaxloop("model", *files, "-o", str(out / "model"))
  if again.returncode:
    return f"model exit {again.returncode}: {again.stderr.strip()[-300:]}"
  a = json.loads((out / "map" / "stats.json").read_text())
  b = json.loads((out / "model" / "stats.json").read_text())
  same = a["levels"] == b["levels"] and a["summary"] == b["summary"]
  return (f"ok ({wall:.0f} s), model on outputs "
          f"{'identical' if same else 'DIFFERENT'}; EDP "
          f"{a['summary']['edp']:.4g}")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--budget", type=int, default=2000)
  ap.add_argument("--designs", default=",".join(DESIGNS))
  ap.add_argument("--layers", default=",".join(LAYERS))
  args = ap.parse_args()
  bad = 0
  with tempfile.TemporaryDirectory() as tmp:
    for design in args.designs.split(","):
      for layer in args.layers.split(","):
        out = Path(tmp) / design / layer.replace("/", "_")
        row = check(design, layer, args.budget, out)
        bad += not row.startswith("ok") or "DIFFERENT" in row
        print(f"{design:26} {layer:18} {row}", flush=True)
  print(f"{bad} failures")
  sys.exit(1 if bad else 0)


if __name__ == "__main__":
  main()
