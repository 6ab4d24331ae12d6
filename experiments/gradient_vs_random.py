"""Gradient search vs random search vs the default mapper.

For real layers (resnet18/vgg16 convs, gpt2 GEMMs from the reference
``layer_shapes``) on the eyeriss_like and simba_like reference
architectures (their ERT/ART and mapper constraints), runs

* ``random``: uniform sampling, ``--random-budget`` evaluations;
* ``gradient``: multi-start gradient descent on the relaxed model
  (``--starts`` x ``--steps``), once cold (compiling) and once warm;
* ``evolve`` (the default discrete mapper for large spaces) with the time
  limit equal to the warm gradient search's wall time (evolve warmed up
  too).

All reported numbers are exact-model EDPs of legal mappings.  Gradient
"evaluations" count exact evaluations plus relaxed forward+backward
evaluations.  Writes ``experiments/results/gradient_vs_random.md`` and one
PNG per architecture.

    python experiments/gradient_vs_random.py [--random-budget 20000]
"""
from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np

from jaxloop import api
from jaxloop.mapper import search

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT.parent / "shared" / "timeloop-reference"
ARCHS = {"eyeriss_like": "example_designs:eyeriss_like",
         "simba_like": "example_designs:simba_like"}
# Exact + relaxed evaluations a gradient run may use: far more than
# --starts x --steps, so a run ends after its steps.
GRADIENT_BUDGET = 100_000
LAYERS = ["resnet18/02.yaml", "resnet18/11.yaml", "vgg16/04.yaml",
          "gpt2/001.yaml", "gpt2/003.yaml"]


def load(arch: str, layer: str, ref: Path):
  cases = json.loads((ref / "cases.json").read_text())
  c = next(c for c in cases if c["name"] == ARCHS[arch])
  d = ref / c["dir"]
  return api.load(d / c["input"], d / c["ert"], d / c["art"],
                  ref / "layer_shapes" / layer)


def curve(result, relaxed=False):
  """``(evaluations, time_s, best)`` arrays from a SearchResult log."""
  ev = np.asarray([r["evaluated"] + (r.get("relaxed_evaluated", 0)
                                     if relaxed else 0)
                   for r in result.log], float)
  ts = np.asarray([r["time_s"] for r in result.log], float)
  best = np.asarray([r["best_objective"] for r in result.log], float)
  return ev, ts, best


def _best(result) -> float:
  return result.best_objective[0] if result.best_objective else float("inf")


def first_reach(ev, best, target):
  hit = np.nonzero(best <= target * (1 + 1e-12))[0]
  return float(ev[hit[0]]) if len(hit) else float("inf")


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--reference", default=str(REF))
  ap.add_argument("--random-budget", type=int, default=20_000)
  ap.add_argument("--starts", type=int, default=16)
  ap.add_argument("--steps", type=int, default=80)
  ap.add_argument("--lr", type=float, default=0.2)
  ap.add_argument("--round-every", type=int, default=5)
  ap.add_argument("--equal-time", type=float, default=2.0,
                  help="seconds for the hybrid vs evolve comparison")
  ap.add_argument("--archs", default=",".join(ARCHS))
  ap.add_argument("--layers", default=",".join(LAYERS))
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--out", default=str(ROOT / "experiments" / "results"))
  args = ap.parse_args()
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  rows, curves = [], {}
  for arch in args.archs.split(","):
    for layer in args.layers.split(","):
      wl = load(arch, layer, Path(args.reference))
      # Every search ranks by EDP; without a budget a search would stop at
      # the default time limit, so each gets a budget or a time limit.
      run = functools.partial(search, wl, objective="edp", progress=False)
      # Random search logs every 256 evaluations (its first hit of its
      # best is known to within 256).
      t0 = time.perf_counter()
      rr = run("random", budget=args.random_budget, seed=args.seed,
               batch=256)
      t_rand = time.perf_counter() - t0
      grad = functools.partial(
          run, "gradient", budget=GRADIENT_BUDGET, starts=args.starts,
          steps=args.steps, lr=args.lr, round_every=args.round_every)
      # Cold: the first run pays for XLA compilation; the timed comparison
      # below is warm (compiled functions reused, as in a sweep).
      t0 = time.perf_counter()
      grad(seed=args.seed + 1)
      t_cold = time.perf_counter() - t0
      t0 = time.perf_counter()
      gr = grad(seed=args.seed)
      t_grad = time.perf_counter() - t0
      run("evolve", budget=8192, seed=args.seed + 1)  # warm-up (compiling)
      t0 = time.perf_counter()
      er = run("evolve", time_limit=t_grad, seed=args.seed)
      t_evo = time.perf_counter() - t0
      # Longer equal budget: the hybrid (gradient seeds, then evolve) vs
      # evolve alone, both warm, --equal-time seconds each.
      hybrid = functools.partial(
          run, "hybrid", time_limit=args.equal_time, starts=args.starts,
          steps=args.steps, lr=args.lr, round_every=args.round_every,
          gradient_share=0.5)
      hybrid(seed=args.seed + 1)     # warm-up (compilation)
      hr = hybrid(seed=args.seed)
      er2 = run("evolve", time_limit=args.equal_time, seed=args.seed)
      r_ev, r_t, r_b = curve(rr)
      g_ev, g_t, g_b = curve(gr, relaxed=True)
      e_ev, e_t, e_b = curve(er)
      r_best = rr.best_objective[0] if rr.best_objective else float("inf")
      g_best = gr.best_objective[0] if gr.best_objective else float("inf")
      e_best = er.best_objective[0] if er.best_objective else float("inf")
      r_need = first_reach(r_ev, r_b, r_best)
      g_need = first_reach(g_ev, g_b, r_best)
      rows.append(dict(
          arch=arch, layer=layer, random_best=r_best, random_evals=r_ev[-1],
          random_evals_to_best=r_need, random_time=t_rand,
          grad_best=g_best, grad_exact=gr.evaluated,
          grad_relaxed=gr.relaxed_evaluated, grad_time=t_grad,
          grad_cold_time=t_cold,
          grad_evals_to_random_best=g_need,
          evolve_best=e_best, evolve_evals=er.evaluated, evolve_time=t_evo,
          hybrid_best=_best(hr), evolve_long_best=_best(er2)))
      curves[(arch, layer)] = ((r_ev, r_t, r_b), (g_ev, g_t, g_b),
                               (e_ev, e_t, e_b))
      print(json.dumps(rows[-1]), flush=True)
  write_table(out, rows, args)
  plot(out, curves)


def write_table(out: Path, rows, args):
  lines = [
      "# Gradient search vs random search vs evolve", "",
      f"random budget {args.random_budget}; gradient {args.starts} starts x "
      f"{args.steps} steps (lr {args.lr}, rounding every {args.round_every}); "
      "evolve (the default mapper) time limit = gradient wall time, both warm "
      "(compiled functions reused; the gradient's first, compiling run is "
      "'cold s').  'hybrid': gradient seeds handed to evolve (half the time "
      f"each), against evolve alone, {args.equal_time:g} s each, warm.  "
      "Random search logs every 256 evaluations.  EDP in "
      "J*cycles, exact model, legal "
      "mappings.  Gradient evals = exact + relaxed (forward+backward).  "
      "'evals to random best': evaluations until the best EDP was <= "
      "random's final best (random: until it found its own best).", "",
      "| arch | layer | random best EDP | random evals to best | gradient "
      "best EDP | gradient evals (exact+relaxed) | gradient evals to random "
      "best | ratio | gradient time s | cold s | evolve best EDP (same time) | "
      "evolve evals | grad <= evolve | hybrid EDP | evolve EDP | "
      "hybrid <= evolve |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  n10 = nev = nhy = 0
  for r in rows:
    ratio = r["random_evals_to_best"] / max(r["grad_evals_to_random_best"],
                                            1)
    n10 += ratio >= 10
    win = r["grad_best"] <= r["evolve_best"]
    nev += win
    hwin = r["hybrid_best"] <= r["evolve_long_best"]
    nhy += hwin
    lines.append(
        f"| {r['arch']} | {r['layer']} | {r['random_best']:.4g} | "
        f"{r['random_evals_to_best']:.0f} | {r['grad_best']:.4g} | "
        f"{r['grad_exact']}+{r['grad_relaxed']} | "
        f"{r['grad_evals_to_random_best']:.0f} | {ratio:.2f} | "
        f"{r['grad_time']:.1f} | {r['grad_cold_time']:.1f} | "
        f"{r['evolve_best']:.4g} | "
        f"{r['evolve_evals']} | {'yes' if win else 'no'} | "
        f"{r['hybrid_best']:.4g} | {r['evolve_long_best']:.4g} | "
        f"{'yes' if hwin else 'no'} |")
  lines += ["", f"Gradient reached random's best with >= 10x fewer "
            f"evaluations on {n10}/{len(rows)} (arch, layer) pairs; matched "
            f"or beat evolve at equal wall time on {nev}/{len(rows)}; the "
            f"hybrid matched or beat evolve in {args.equal_time:g} s on "
            f"{nhy}/{len(rows)}.", ""]
  (out / "gradient_vs_random.md").write_text("\n".join(lines))
  print("\n".join(lines))


def plot(out: Path, curves):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  archs = sorted({a for a, _ in curves})
  for arch in archs:
    keys = [k for k in curves if k[0] == arch]
    fig, axes = plt.subplots(2, len(keys), figsize=(4 * len(keys), 7),
                             squeeze=False)
    for j, k in enumerate(keys):
      for (ev, ts, b), name in zip(curves[k], ("random", "gradient",
                                               "evolve")):
        ok = np.isfinite(b)
        axes[0, j].step(ev[ok], b[ok], where="post", label=name)
        axes[1, j].step(ts[ok], b[ok], where="post", label=name)
      axes[0, j].set_xscale("log")
      axes[0, j].set_yscale("log")
      axes[1, j].set_yscale("log")
      axes[0, j].set_title(k[1])
      axes[0, j].set_xlabel("model evaluations")
      axes[1, j].set_xlabel("wall time (s)")
      axes[0, j].set_ylabel("best EDP (J*cycles)")
      axes[0, j].legend()
    fig.suptitle(f"{arch}: best EDP vs evaluations / wall time")
    fig.tight_layout()
    fig.savefig(out / f"gradient_vs_random_{arch}.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
  main()
