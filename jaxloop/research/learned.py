"""The ``learned`` search: a trained policy's samples seed evolve.

``jaxloop.search(wl, method="learned", policy=CHECKPOINT)`` and ``jaxloop
map --search learned --policy CHECKPOINT``: the policy
(:mod:`jaxloop.research.policy`) draws ``samples`` mappings of the
workload's mapspace through the mapping environment
(:mod:`jaxloop.research.env`, every draw a legal mapping), and the
default mapper's evolutionary search starts from them
(:func:`~jaxloop.mapper.searches.evolve_search` with ``seeds``), so the
reported mappings and numbers are the exact model's and the budget, time
limit and stop rules count the seeds too.  Without a policy the bundled
checkpoint (:data:`BUNDLED`) is used when the package ships one.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from jaxloop.errors import SpecError
from jaxloop.mapper.driver import SearchResult, require_limit
from jaxloop.mapper.objective import Objective
from jaxloop.mapper.rules import StopRules
from jaxloop.mapper.searches import evolve_search
from jaxloop.precision import exact

BUNDLED = Path(__file__).resolve().parent / "policies" / "default.policy"


def resolve_policy(policy):
  """A :class:`~jaxloop.research.policy.Policy` from a Policy, a checkpoint
  path, or None (the bundled checkpoint).

  Raises:
    SpecError: no policy given and none bundled, or a bad checkpoint.
  """
  from jaxloop.research import policy as policy_lib
  if isinstance(policy, policy_lib.Policy):
    return policy
  if policy is None:
    if not BUNDLED.is_file():
      raise SpecError("the learned search needs a policy checkpoint",
                      path="policy", hint="Pass --policy CHECKPOINT (train "
                      "one with experiments/learned_mapper.py).")
    policy = BUNDLED
  return policy_lib.load(policy)


@exact
def learned_search(workload, *, objective: Objective = "edp",
                   budget: Optional[int] = None,
                   time_limit: Optional[float] = None, seed: int = 0,
                   topk: int = 10, progress: bool = True, batch: int = 4096,
                   rules: StopRules = StopRules(), params=None,
                   policy=None, samples: int = 1000,
                   population: int = 64, patience: int = 30,
                   env=None) -> SearchResult:
  """The policy's ``samples`` draws (at most half the budget), then evolve
  seeded with them for the rest of the budget and time.

  ``policy``: a Policy or a checkpoint path (default: the bundled one);
  ``env``: the workload's :class:`~jaxloop.research.env.MappingEnv`
  (default ``MappingEnv.of(workload)``; one of ``MappingEnv.family`` shares
  its compiled sampler with the other layers of its kind).  Needs a budget, a time limit, a victory or a search size.
  """
  from jaxloop.research import policy as policy_lib
  from jaxloop.research.env import MappingEnv
  require_limit("learned", budget, time_limit, rules)
  start = time.perf_counter()
  pol = resolve_policy(policy)
  n = int(samples) if budget is None else max(1, min(int(samples),
                                                     budget // 2))
  env = MappingEnv.of(workload) if env is None else env
  genomes, _, _ = policy_lib.sample(pol, env, workload, n, seed=seed)
  spent = time.perf_counter() - start
  result = evolve_search(
      workload, objective=objective, budget=budget,
      time_limit=None if time_limit is None else max(time_limit - spent,
                                                     0.1),
      seed=seed, topk=topk, progress=progress, batch=batch, rules=rules,
      params=params, population=population, patience=patience,
      seeds=genomes)
  result.method = "learned"
  result.policy_seconds = spent
  return result
