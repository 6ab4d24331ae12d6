"""Steps per second of the mapping environment: ``jax.jit(jax.vmap(
env.step))`` over N environments, random legal actions, one whole episode.

    python experiments/bench_env.py eyeriss_like --layer resnet18/03 -n 10000

Prints the horizon, the action count, compile time and env steps/s (N
times the horizon over the episode's wall time, action picks included).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import jax
import numpy as np

import jaxloop
from jaxloop.research.env import MappingEnv, random_action

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("arch")
  ap.add_argument("--layer", default="resnet18/03")
  ap.add_argument("-n", type=int, default=10_000)
  args = ap.parse_args()
  wl = jaxloop.load(REFERENCE / "example_designs" / "top.yaml.jinja2",
                    variables={"architecture": args.arch,
                               "problem": f"../layer_shapes/{args.layer}.yaml"})
  env = MappingEnv(wl)
  n, H = args.n, env.layout.horizon
  with jax.enable_x64(True):
    params = env.default_params
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    obs, state = jax.jit(jax.vmap(env.reset, (0, None)))(keys, params)
    step = jax.jit(jax.vmap(env.step, (0, 0, 0, None)))
    pick = jax.jit(jax.vmap(random_action))
    t0 = time.perf_counter()
    jax.block_until_ready(step(keys, state, pick(keys, obs["mask"]), params))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in range(H):
      keys = jax.random.split(jax.random.PRNGKey(t + 1), n)
      obs, state, reward, done, info = step(keys, state,
                                            pick(keys, obs["mask"]), params)
    jax.block_until_ready(reward)
    wall = time.perf_counter() - t0
  print(f"{args.arch} {args.layer}: horizon {H}, {env.layout.num_actions} "
        f"actions, {n} envs; compile {compile_s:.1f} s; episode {wall:.1f} s"
        f": {n * H / wall:.3g} env steps/s; done {np.mean(done):.2f}, "
        f"valid {np.mean(info['valid']):.2f}")


if __name__ == "__main__":
  main()
