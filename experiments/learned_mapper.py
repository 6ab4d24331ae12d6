"""The learned mapper on held-out layers: train, sample, seed the mapper.

For each architecture (Timeloop's example designs through
``example_designs/top.yaml.jinja2``):

1. expert data: ``jaxloop.search(method="evolve", budget=--expert-budget)``
   on each training layer (the files' mapper rules apply: Timeloop's
   victory condition may end it before the budget), its ``--topk`` best distinct mappings turned
   into the environment's action sequences (``policy.imitation_data``);
2. one policy (both architectures) trained by behaviour cloning
   (``policy.train_imitation``, ``--steps`` Adam steps) and saved;
3. on each held-out layer (a network none of the training layers come
   from): ``--samples`` policy samples (one-shot), as many uniform samples
   of the mapspace (random), the random policy in the environment (uniform
   legal actions) and the trained policy's returns; a reference evolve run
   (``--reference-budget``); evolve with and without the policy's seeds
   (``--budget`` each) and the time each takes to come within ``--tol`` of
   the best-known EDP (the best of everything run on the layer).

The held-out layers of an architecture are grouped by layer kind
(``MappingEnv.family``, :mod:`jaxloop.network.kinds`): one compiled sampler,
random-policy program and evaluator per kind, the layer's numbers passed as
data.  The table reports the compilations.

Writes ``experiments/results/learned_mapper.md`` (and the checkpoint).

    python experiments/learned_mapper.py [--quick]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

import jaxloop
from jaxloop.mapspace import Genome
from jaxloop.research import policy as P
from jaxloop.network import kinds
from jaxloop.network.workloads import with_kind
from jaxloop.research.env import MappingEnv, compiled_programs

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))
TRAIN = ("resnet18/00", "resnet18/01", "resnet18/05", "resnet18/07",
         "resnet18/10", "resnet18/11", "vgg16/02", "vgg16/04")
HELD_OUT = ("alexnet/1", "alexnet/2", "alexnet/3", "alexnet/4", "alexnet/5",
            "densenet201/002", "densenet201/003", "densenet201/005",
            "mobilenet_v3/05", "mobilenet_v3/06")


def load(arch: str, layer: str):
  return jaxloop.load(REFERENCE / "example_designs" / "top.yaml.jinja2",
                      variables={"architecture": arch,
                                 "problem": f"../layer_shapes/{layer}.yaml"})


def expert_data(arch: str, layers, args) -> list[dict]:
  """Imitation data of every training layer of ``arch`` (rows padded to
  the largest table among them)."""
  loaded = [(layer, load(arch, layer)) for layer in layers]
  envs = [MappingEnv(wl) for _, wl in loaded]
  rows = max(e.layout.num_rows for e in envs)
  out = []
  for (layer, wl), env in zip(loaded, envs):
    t0 = time.perf_counter()
    res = jaxloop.search(wl, method="evolve", budget=args.expert_budget,
                         seed=0, topk=args.topk, progress=False)
    g = Genome.concat([wl.mapspace.encode(m) for _, m, _ in res.topk])
    data = P.imitation_data(env, wl, g, num_rows=rows)
    out.append(data)
    print(f"  expert {arch} {layer}: {len(data['actions'])} trajectories, "
          f"best EDP {res.best_objective[0]:.4g} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
  return out


def time_to_reach(result, target: float, tol: float, offset: float = 0.0):
  """Seconds until the search's best came within ``tol`` of ``target``
  (None: never)."""
  for row in result.log:
    best = row["best_objective"]
    best = best[0] if isinstance(best, (list, tuple)) else best
    if best is not None and np.isfinite(best) and best <= target * (1 + tol):
      return row["time_s"] + offset
  return None


def held_out_envs(arch: str, layers) -> list:
  """``[(workload, env)]`` of the held-out layers: workloads whose
  evaluators compile for their layer kind, environments of one family."""
  loaded = [load(arch, layer) for layer in layers]
  envs = MappingEnv.family(loaded)
  return [(with_kind(wl, env.layout.structure), env)
          for wl, env in zip(loaded, envs)]


def held_out_row(arch: str, layer: str, wl, env, pol, args) -> dict:
  """Every measurement on one held-out layer."""
  n = args.samples
  t0 = time.perf_counter()
  P.sample(pol, env, wl, n, seed=99)   # compiles on a kind's first layer
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  g, ret, ok = P.sample(pol, env, wl, n, seed=1)
  policy_s = time.perf_counter() - t0
  ev = jaxloop.evaluator(wl, stats=("energy_total", "cycles", "valid"))
  edp_of = lambda m: np.where(*(lambda s: (np.asarray(s.valid), np.asarray(
      s.energy_total) * 1e-12 * np.asarray(s.cycles)))(ev(m)), np.inf)
  policy_edp = edp_of(wl.mapspace.decode(g))
  rand_edp = edp_of(wl.mapspace.sample(np.random.default_rng(1), n))
  rret, rok, rst = env.random_rollouts(jax.random.PRNGKey(1), n)
  rpol_edp = np.where(np.asarray(rok), np.exp(-np.asarray(rret)), np.inf)
  off = dict(victory=0, timeout=0, search_size=0, progress=False)
  ref = jaxloop.search(wl, method="evolve", budget=args.reference_budget,
                       seed=7, **off)
  plain = jaxloop.search(wl, method="evolve", budget=args.budget, seed=3,
                         **off)
  seeded = jaxloop.search(wl, method="learned", budget=args.budget, seed=3,
                          policy=pol, samples=n, env=env, **off)
  best = min(ref.best_objective[0], plain.best_objective[0],
             seeded.best_objective[0], policy_edp.min(), rand_edp.min())
  return {
      "arch": arch, "layer": layer, "best_known": best,
      "policy_best": policy_edp.min(), "random_best": rand_edp.min(),
      "random_policy_best": rpol_edp.min(),
      "policy_valid": float(np.mean(ok)), "random_valid": float(
          np.mean(np.isfinite(rand_edp))),
      "policy_return": float(np.mean(ret)),
      "random_policy_return": float(np.mean(np.asarray(rret))),
      "policy_s": policy_s, "compile_s": compile_s,
      "plain_final": plain.best_objective[0],
      "seeded_final": seeded.best_objective[0],
      "plain_reach": time_to_reach(plain, best, args.tol),
      "seeded_reach": time_to_reach(seeded, best, args.tol,
                                    offset=seeded.policy_seconds),
      "plain_s": plain.elapsed, "seeded_s": seeded.elapsed
      + seeded.policy_seconds, "kind": kinds.describe(env.layout.structure),
      "programs": compiled_programs(), "evaluator_compiles": ev.compiles()}


def fmt_s(v) -> str:
  return "not reached" if v is None else f"{v:.1f}"


def write_table(rows, meta, path: Path) -> None:
  """The Markdown results (one row per held-out layer, then a summary)."""
  lines = [
      "# Learned mapper on held-out layers", "",
      f"Date {meta['date']}; command `{meta['command']}`. "
      f"{meta['machine']}", "",
      f"Training: {meta['train']}", "",
      "EDP ratios are EDP / best-known EDP (1.00 = best known; lower is "
      "better). Best known: the best EDP anything below found on the "
      f"layer. Reach: seconds until the search's best came within "
      f"{meta['tol'] * 100:g}% of the best known (seeded: including the "
      "policy's sampling, compiled beforehand; `first call s`: the first "
      "1,000-sample call, which compiles the sampler on a kind's first "
      "layer only). Absolute times are on a shared 2-core machine and "
      "noisy.", "",
      "| arch | layer | policy one-shot | random | random policy (env) "
      "| beats random | valid: policy / random | return: policy / random "
      "policy | evolve reach s (final) | learned+evolve reach s (final) "
      "| policy s | first call s | kind |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    b = r["best_known"]
    lines.append(
        f"| {r['arch']} | {r['layer']} | {r['policy_best'] / b:.2f} | "
        f"{r['random_best'] / b:.2f} | {r['random_policy_best'] / b:.2f} | "
        f"{'yes' if r['policy_best'] < r['random_best'] else 'no'} | "
        f"{r['policy_valid']:.2f} / {r['random_valid']:.2f} | "
        f"{r['policy_return']:.2f} / {r['random_policy_return']:.2f} | "
        f"{fmt_s(r['plain_reach'])} ({r['plain_final'] / b:.3f}) | "
        f"{fmt_s(r['seeded_reach'])} ({r['seeded_final'] / b:.3f}) | "
        f"{r['policy_s']:.1f} | {r['compile_s']:.1f} | {r['kind']} |")
  per_arch = []
  for arch in dict.fromkeys(r["arch"] for r in rows):
    mine = [r for r in rows if r["arch"] == arch]
    per_arch.append(
        f"{arch} {sum(r['policy_best'] < r['random_best'] for r in mine)} "
        f"of {len(mine)} ({len({r['kind'] for r in mine})} kinds)")
  wins = sum(r["policy_best"] < r["random_best"] for r in rows)
  programs = sum(max(r["programs"] for r in rows if r["arch"] == a)
                 for a in dict.fromkeys(r["arch"] for r in rows))
  gm = lambda k: float(np.exp(np.mean([np.log(r[k] / r["best_known"])
                                       for r in rows])))
  lines += ["", f"Policy beats random sampling at {meta['samples']} samples "
            f"on {wins} of {len(rows)} layers. Geometric-mean EDP ratio: "
            f"policy {gm('policy_best'):.2f}, random {gm('random_best'):.2f}, "
            f"random policy {gm('random_policy_best'):.2f}; final "
            f"evolve {gm('plain_final'):.3f}, learned+evolve "
            f"{gm('seeded_final'):.3f}.", "",
            f"Per architecture, policy beats random: {'; '.join(per_arch)}. "
            f"Environment and policy programs compiled in all: "
            f"{programs} (policy sampler and random policy, "
            f"one each per architecture and layer kind, sample sizes "
            f"{meta['samples']} and the search's own).", ""]
  path.write_text("\n".join(lines))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--archs", default="eyeriss_like,simba_like")
  ap.add_argument("--train", default=",".join(TRAIN))
  ap.add_argument("--held-out", default=",".join(HELD_OUT))
  ap.add_argument("--expert-budget", type=int, default=12000)
  ap.add_argument("--topk", type=int, default=32)
  ap.add_argument("--steps", type=int, default=400)
  ap.add_argument("--samples", type=int, default=1000)
  ap.add_argument("--budget", type=int, default=20000)
  ap.add_argument("--reference-budget", type=int, default=40000)
  ap.add_argument("--tol", type=float, default=0.01)
  ap.add_argument("--policy", default=str(ROOT / "jaxloop" / "research" /
                                          "policies" / "default.policy"))
  ap.add_argument("--reuse-policy", action="store_true",
                  help="skip training when --policy exists")
  ap.add_argument("--resume", action="store_true",
                  help="keep the rows of the output's .json record and run "
                  "only the missing (arch, layer) pairs")
  ap.add_argument("-o", "--output", default=str(
      ROOT / "experiments" / "results" / "learned_mapper.md"))
  ap.add_argument("--from-records", nargs="+", metavar="JSON",
                  help="only write the table from these .json records "
                  "(runs split by architecture)")
  args = ap.parse_args()
  if args.from_records:
    rows = sum((json.loads(Path(f).read_text()) for f in args.from_records),
               [])
    metas = [json.loads(Path(f).with_suffix(".meta.json").read_text())
             for f in args.from_records]
    meta = dict(metas[0], command="`; `".join(m["command"] for m in metas))
    write_table(rows, meta, Path(args.output))
    return
  archs = args.archs.split(",")
  t0 = time.perf_counter()
  if args.reuse_policy and Path(args.policy).is_file():
    pol = P.load(args.policy)
  else:
    data = []
    for arch in archs:
      data += expert_data(arch, args.train.split(","), args)
    pol, losses = P.train_imitation(P.Policy.init(0), data, args.steps,
                                    log_every=50)
    pol.meta = {"archs": archs, "train_layers": args.train.split(","),
                "expert_budget": args.expert_budget, "topk": args.topk,
                "steps": args.steps, "final_loss": float(np.mean(
                    losses[-20:])), "first_loss": losses[0],
                "command": "python experiments/learned_mapper.py"}
    Path(args.policy).parent.mkdir(parents=True, exist_ok=True)
    P.save(pol, args.policy)
  train_s = time.perf_counter() - t0
  print(f"policy ready in {train_s:.0f} s: {pol.meta}", flush=True)
  meta = {"date": datetime.date.today().isoformat(),
          "command": "python experiments/learned_mapper.py " + " ".join(
              f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
              if k in ("archs", "expert_budget", "steps", "samples",
                       "budget", "reference_budget"))
          + (" --reuse-policy" if args.reuse_policy else ""),
          "machine": f"{os.cpu_count()} CPU cores, shared with other jobs.",
          "train": (f"{len(pol.meta.get('train_layers', []))} layers per "
                    f"architecture ({', '.join(pol.meta.get('train_layers', []))}"
                    f"), top-{pol.meta.get('topk')} mappings of evolve with "
                    f"budget {pol.meta.get('expert_budget')} each, "
                    f"{pol.meta.get('steps')} Adam steps of behaviour "
                    f"cloning (loss {pol.meta.get('first_loss', 0):.1f} -> "
                    f"{pol.meta.get('final_loss', 0):.1f}); "
                    + (f"{train_s:.0f} s in all." if not args.reuse_policy
                       else "the shipped checkpoint, trained by this "
                       "script without --reuse-policy.")),
          "tol": args.tol, "samples": args.samples}
  record = Path(args.output).with_suffix(".json")
  record.with_suffix(".meta.json").write_text(json.dumps(meta))
  rows = (json.loads(record.read_text())
          if args.resume and record.is_file() else [])
  for arch in archs:
    done = {r["layer"] for r in rows if r["arch"] == arch}
    layers = [l for l in args.held_out.split(",") if l not in done]
    for layer, (wl, env) in zip(layers, held_out_envs(arch, layers)):
      r = held_out_row(arch, layer, wl, env, pol, args)
      rows.append(r)
      record.write_text(json.dumps(rows, indent=1, default=float))
      print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                        for k, v in r.items()}), flush=True)
      write_table(rows, meta, Path(args.output))
  print(Path(args.output).read_text())


if __name__ == "__main__":
  main()
