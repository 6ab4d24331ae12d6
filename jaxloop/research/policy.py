"""A learned mapper: a flax policy over :class:`~jaxloop.research.env.
MappingEnv` decisions, trained across layers, that proposes mappings of
layers it has not seen.

The policy scores the legal actions of each decision:

* a context vector per decision: the layer's and architecture's features
  (:func:`jaxloop.research.features.layer_features`, ``arch_features``),
  the mapping decided so far (``encode_mapping`` of ``obs["partial"]``:
  undecided dims have factor 1) and the decision's descriptor (phase, dim,
  level, data space one-hots); an MLP turns it into a query ``q [E]``;
* candidates: factorization rows (``log2`` of the row's factor at every
  level's temporal, X and Y slot, padded to ``MAX_LEVELS``), loop dims
  (dim one-hot, ``log2`` bound, ``log2`` temporal factor at the level) and
  the two keep choices, each embedded by its own MLP into ``[E]``;
* logits: ``embedding . q`` on legal actions (``-1e9`` elsewhere).

Row embeddings do not depend on the state: they are computed once per layer
(``[D, N, E]``) and gathered per decision, so one decision costs ``N * E``
multiply-adds per sample.

Training (:func:`train_imitation`) is supervised on the best mappings a
search found for each training layer (behaviour cloning: maximise the log
probability of their action sequences, teacher-forced through the
environment); :func:`sample` draws mappings of any layer in one compiled
call; :func:`save`/:func:`load` write a checkpoint (``flax.serialization``
msgpack of the parameters plus a JSON header).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional, Sequence

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxloop.errors import SpecError
from jaxloop.precision import exact
from jaxloop.research import features
from jaxloop.research.env import FACTOR, KEEP, ORDER, MappingEnv

ML, MD, MS = features.MAX_LEVELS, features.MAX_DIMS, features.MAX_DATASPACES
ROW_WIDTH = 3 * ML
ORDER_WIDTH = MD + 3
DESCRIPTOR_WIDTH = 4 + MD + ML + MS
FORMAT = "jaxloop-policy-1"


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
  """Sizes of the network (saved with a checkpoint)."""
  hidden: int = 128
  embed: int = 32


class MapperPolicy(nn.Module):
  """Context MLP, candidate encoders and dot-product logits."""
  config: PolicyConfig = PolicyConfig()

  def setup(self):
    h, e = self.config.hidden, self.config.embed
    self.context = nn.Sequential([nn.Dense(h), nn.gelu, nn.Dense(h), nn.gelu,
                                  nn.Dense(e)])
    self.row_encoder = nn.Sequential([nn.Dense(h // 2), nn.gelu, nn.Dense(e)])
    self.order_encoder = nn.Sequential([nn.Dense(h // 2), nn.gelu,
                                        nn.Dense(e)])
    self.keep_encoder = nn.Dense(e)

  def embed_rows(self, rows: jax.Array) -> jax.Array:
    """``[..., N, ROW_WIDTH]`` row features -> ``[..., N, E]``."""
    return self.row_encoder(rows)

  def query(self, ctx: jax.Array) -> jax.Array:
    """``[..., F_ctx]`` -> ``[..., E]``."""
    return self.context(ctx)

  def order_logits(self, q: jax.Array, cand: jax.Array) -> jax.Array:
    """``q [..., E]``, ``cand [..., MD, ORDER_WIDTH]`` -> ``[..., MD]``."""
    return jnp.einsum("...ke,...e->...k", self.order_encoder(cand), q)

  def keep_logits(self, q: jax.Array) -> jax.Array:
    """``q [..., E]`` -> ``[..., 2]`` (bypass, keep)."""
    return q @ self.keep_encoder(jnp.eye(2, dtype=q.dtype)).T

  def __call__(self, ctx, rows, cand):
    """All heads once (for ``init``)."""
    q = self.query(ctx)
    return (jnp.einsum("ne,e->n", self.embed_rows(rows), q),
            self.order_logits(q, cand), self.keep_logits(q))


# ---------------------------------------------------------------- inputs
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LayerInputs:
  """What the policy reads of one workload besides the observation.

  Attributes:
    static: ``f32[F_layer + F_arch]`` layer and architecture features.
    rows: ``f32[D, N, ROW_WIDTH]`` factorization rows, ``log2`` factors
      per (kind, level) slot, levels padded to ``MAX_LEVELS``.
    descriptor: ``f32[H + 1, DESCRIPTOR_WIDTH]`` each decision's phase,
      dim, level and data-space one-hots.
    order_level: ``i32[H + 1]`` the level of each order decision (0
      elsewhere).
    log2_bounds: ``f32[MD]`` ``log2`` of the dims' bounds.
  """
  static: jax.Array
  rows: jax.Array
  descriptor: jax.Array
  order_level: jax.Array
  log2_bounds: jax.Array


def layer_inputs(env: MappingEnv, workload,
                 num_rows: Optional[int] = None) -> LayerInputs:
  """The :class:`LayerInputs` of ``workload`` (numpy arrays); rows padded
  to ``num_rows`` (default: the environment's ``N``)."""
  lay = env.layout
  s = lay.structure
  L, D = s.num_levels, s.num_dims
  features.check_fits(s, workload.sources)
  layer, arch = features.workload_features(workload)
  N = num_rows or lay.num_rows
  rows = np.zeros((D, N, 3, ML), np.float32)
  table = np.asarray(env.default_params.rows, np.float64)     # [D, N0, 3L]
  rows[:, :table.shape[1], :, :L] = np.log2(table).reshape(D, -1, 3, L)
  phase, index = lay.phase_table()
  desc = np.zeros((len(phase), DESCRIPTOR_WIDTH), np.float32)
  order_level = np.zeros(len(phase), np.int32)
  for t, (p, i) in enumerate(zip(phase, index)):
    desc[t, p] = 1.0
    if p == KEEP:
      l, ds = lay.keep_steps[i]
      desc[t, 4 + MD + l] = desc[t, 4 + MD + ML + ds] = 1.0
    elif p == FACTOR:
      desc[t, 4 + i] = 1.0
    elif p == ORDER:
      l, pos = lay.order_steps[i]
      desc[t, 4 + MD + l] = 1.0
      desc[t, 4 + pos] = 1.0
      order_level[t] = l
  bounds = np.zeros(MD, np.float32)
  bounds[:D] = np.log2(workload.structure.dim_bounds)   # not a kind's
  return LayerInputs(np.concatenate([layer, arch]).astype(np.float32),
                     rows.reshape(D, N, ROW_WIDTH), desc, order_level, bounds)


def context(lin: LayerInputs, obs: dict, t) -> jax.Array:
  """``f32[F_ctx]`` context of one observation at decision ``t``."""
  mapping = features.encode_mapping(obs["partial"])
  return jnp.concatenate([lin.static, mapping, lin.descriptor[t]]).astype(
      jnp.float32)


def order_candidates(lin: LayerInputs, obs: dict, t) -> jax.Array:
  """``f32[MD, ORDER_WIDTH]``: per dim its one-hot, ``log2`` bound,
  ``log2`` temporal factor at the decision's level, and whether placed."""
  level = lin.order_level[t]
  temporal = jnp.log2(obs["partial"].temporal[level].astype(jnp.float32))
  placed = obs["placed"][level].astype(jnp.float32)
  D = temporal.shape[0]
  pad = lambda x: jnp.pad(x, (0, MD - D))
  return jnp.concatenate([jnp.eye(MD, dtype=jnp.float32),
                          lin.log2_bounds[:, None],
                          pad(temporal)[:, None], pad(placed)[:, None]],
                         axis=1)


def _masked(logits: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.where(mask, logits, -1e9)


def _pad_last(x: jax.Array, n: int) -> jax.Array:
  return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])


# -------------------------------------------------------------- sampling
def _rollout_program(env: MappingEnv, module: MapperPolicy):
  """Jitted ``(net, lin, env_params, key, n, greedy) -> (returns f64[n],
  valid bool[n], final EnvState [n], log_prob f32[n])``, shared by the
  environments of one layout (:meth:`MappingEnv.program`).

  The decisions run in lockstep (a scan over the decision index, shared by
  the n episodes), so each step's phase is a real branch and a factor step
  gathers one dim's row embeddings; the exact model runs once, on the
  finished mappings (the episode's return is the last step's reward)."""
  return env.program(("policy", module.config),
                     lambda e: _build_rollout(e, module))


def _build_rollout(env: MappingEnv, module: MapperPolicy):
  """The policy's lockstep rollouts: :func:`_rollout_program`."""
  lay = env.layout
  phase_tab, index_tab = (jnp.asarray(v) for v in lay.phase_table())
  A, D = lay.num_actions, lay.structure.num_dims

  def run(net, lin, params, key, n, greedy):
    rows = module.apply(net, lin.rows, method=MapperPolicy.embed_rows)
    obs, st = jax.vmap(env.reset, (0, None))(jax.random.split(key, n),
                                             params)

    def body(carry, t):
      obs, st, logp = carry
      ctx = jax.vmap(context, (None, 0, None))(lin, obs, t)
      q = module.apply(net, ctx, method=MapperPolicy.query)      # [n, E]
      heads = [
          lambda: _pad_last(module.apply(
              net, q, method=MapperPolicy.keep_logits), A),
          lambda: _pad_last(q @ rows[index_tab[t]][:A].T, A),
          lambda: _pad_last(module.apply(
              net, q, jax.vmap(order_candidates, (None, 0, None))(
                  lin, obs, t), method=MapperPolicy.order_logits)[:, :D], A)]
      heads = [lambda h=h: h().astype(jnp.float32) for h in heads]
      logits = _masked(jax.lax.switch(jnp.minimum(phase_tab[t], ORDER),
                                       heads), obs["mask"])
      k = jax.random.fold_in(key, t)
      a = jnp.where(greedy, jnp.argmax(logits, -1),
                    jax.random.categorical(k, logits)).astype(jnp.int32)
      lp = jnp.take_along_axis(jax.nn.log_softmax(logits), a[:, None], 1)
      st = jax.vmap(env.advance, (0, 0, None, None))(st, a, params, t)
      obs = jax.vmap(env.observe, (0, None))(st, params)
      return (obs, st, logp + lp[:, 0]), None

    (obs, st, logp), _ = jax.lax.scan(
        body, (obs, st, jnp.zeros(n, jnp.float32)), jnp.arange(lay.horizon))
    mappings = jax.vmap(env.mapping_of, (0, None))(st, params)
    ret, stats = jax.vmap(env.one_shot, (None, 0))(params, mappings)
    return ret, stats.valid, st, logp

  return jax.jit(run, static_argnums=(4, 5))


@exact
def sample(policy: "Policy", env: MappingEnv, workload, n: int,
           seed: int = 0, greedy: bool = False):
  """``n`` mappings of ``workload`` drawn from the policy (one compiled
  call per environment and ``n``).

  Returns:
    ``(genomes, returns f64[n], valid bool[n])``: mapspace genomes,
    episode returns (``-log`` objective) and validity.
  """
  lin = jax.tree.map(jnp.asarray, layer_inputs(env, workload))
  ret, ok, st, _ = _rollout_program(env, policy.module)(
      policy.params, lin, env.default_params,
      jax.random.PRNGKey(seed), int(n), bool(greedy))
  return env.genome_of(st), np.asarray(ret), np.asarray(ok)


# ------------------------------------------------------------- the policy
@dataclasses.dataclass
class Policy:
  """A network and its parameters.

  Attributes:
    module: the :class:`MapperPolicy`; params: its flax parameters;
    meta: what it was trained on (architectures, layers, command).
  """
  module: MapperPolicy
  params: dict
  meta: dict = dataclasses.field(default_factory=dict)

  @staticmethod
  def init(seed: int = 0, config: PolicyConfig = PolicyConfig()) -> "Policy":
    """A fresh policy (random parameters)."""
    module = MapperPolicy(config)
    width = (len(features.layer_feature_names())
             + len(features.arch_feature_names())
             + features.mapping_width() + DESCRIPTOR_WIDTH)
    params = module.init(jax.random.PRNGKey(seed), jnp.zeros(width),
                         jnp.zeros((2, ROW_WIDTH)),
                         jnp.zeros((MD, ORDER_WIDTH)))
    return Policy(module, params)


def save(policy: Policy, path) -> None:
  """Writes a checkpoint (msgpack: format, config, meta, parameters)."""
  blob = {"format": FORMAT,
          "config": json.dumps(dataclasses.asdict(policy.module.config)),
          "meta": json.dumps(policy.meta),
          "params": flax.serialization.to_state_dict(policy.params)}
  Path(path).write_bytes(flax.serialization.msgpack_serialize(blob))


def load(path) -> Policy:
  """Reads a checkpoint written by :func:`save`.

  Raises:
    SpecError: a missing file or one that is not a policy checkpoint.
  """
  p = Path(path)
  if not p.is_file():
    raise SpecError("no such policy checkpoint", path="policy", where=str(p),
                    hint="Pass a file written by jaxloop.research.policy."
                    "save (see docs/research-kit.md).")
  try:
    blob = flax.serialization.msgpack_restore(p.read_bytes())
    ok = isinstance(blob, dict) and blob.get("format") == FORMAT
  except Exception:                      # noqa: BLE001 any parse failure
    ok = False
  if not ok:
    raise SpecError("not a jaxloop policy checkpoint", path="policy",
                    where=str(p), hint=f"Expected format '{FORMAT}'.")
  fresh = Policy.init(0, PolicyConfig(**json.loads(blob["config"])))
  params = flax.serialization.from_state_dict(fresh.params, blob["params"])
  return Policy(fresh.module, params, json.loads(blob["meta"]))


# ------------------------------------------------------------- imitation
def _replay_program(env: MappingEnv):
  """Jitted ``(lin, params, actions [B, H]) -> (ctx, cand, mask, ok)``:
  each decision's context ``[B, H, F]``, order candidates ``[B, H, MD,
  OW]``, mask ``[B, H, A]``, and whether the episode ended valid."""
  return env.program("replay", _build_replay)


def _build_replay(env: MappingEnv):
  """Teacher-forced replays: :func:`_replay_program`."""
  H = env.layout.horizon

  def one(lin, params, actions):
    obs, _, final = env.replay(params, actions)
    steps = jnp.arange(H)
    per = lambda f: jax.vmap(lambda o, t: f(lin, o, t))(obs, steps)
    mapping = env.mapping_of(final, params)
    _, stats = env.one_shot(params, mapping)
    return per(context), per(order_candidates), obs["mask"], stats.valid

  return jax.jit(jax.vmap(one, (None, None, 0)))


@exact
def imitation_data(env: MappingEnv, workload, genomes,
                   num_rows: Optional[int] = None) -> dict:
  """Teacher-forced decisions that build ``genomes`` (numpy arrays).

  Args:
    genomes: a :class:`~jaxloop.mapspace.Genome` batch of the workload's
      mapspace (e.g. the top-k of a search).
    num_rows: pad factor candidates to this many rows (one compiled
      training step for layers of different table sizes).

  Returns:
    ``rows [D, N, ROW_WIDTH]``, ``ctx [B, H, F]``, ``cand [B, O, MD, OW]``,
    ``keep_mask [B, K, 2]``, ``factor_mask [B, D, N]``, ``order_mask
    [B, O, D]``, ``actions [B, H]``: only genomes whose actions are all
    legal under the masks and that end valid.
  """
  lay = env.layout
  K, D, O = len(lay.keep_steps), lay.structure.num_dims, len(lay.order_steps)
  N = num_rows or lay.num_rows
  lin = layer_inputs(env, workload, N)
  actions = env.actions_of(genomes)
  ctx, cand, mask, valid = (np.asarray(x) for x in _replay_program(env)(
      jax.tree.map(jnp.asarray, lin), env.default_params,
      jnp.asarray(actions)))
  legal = np.take_along_axis(mask, actions[..., None], -1)[..., 0].all(1)
  keep = legal & valid
  mask = mask[keep]
  factor_mask = np.zeros((int(keep.sum()), D, N), bool)
  factor_mask[:, :, :mask.shape[-1]] = mask[:, K:K + D, :min(
      N, mask.shape[-1])]
  return {"rows": lin.rows, "ctx": ctx[keep], "cand": cand[keep, K + D:],
          "keep_mask": mask[:, :K, :2], "factor_mask": factor_mask,
          "order_mask": mask[:, K + D:, :D], "actions": actions[keep]}


def imitation_loss(module: MapperPolicy, net, batch: dict) -> jax.Array:
  """Mean negative log probability of the batch's action sequences
  (``batch`` as :func:`imitation_data` returns, a leading ``B``)."""
  K = batch["keep_mask"].shape[1]
  D = batch["factor_mask"].shape[1]
  a = batch["actions"]
  q = module.apply(net, batch["ctx"], method=MapperPolicy.query)  # [B,H,E]
  rows = module.apply(net, batch["rows"], method=MapperPolicy.embed_rows)
  parts = [
      (module.apply(net, q[:, :K], method=MapperPolicy.keep_logits),
       batch["keep_mask"], a[:, :K]),
      (jnp.einsum("dne,bde->bdn", rows, q[:, K:K + D]),
       batch["factor_mask"], a[:, K:K + D]),
      (module.apply(net, q[:, K + D:], batch["cand"],
                    method=MapperPolicy.order_logits)[..., :D],
       batch["order_mask"], a[:, K + D:])]
  total = 0.0
  for logits, mask, act in parts:
    if logits.shape[1]:
      lp = jax.nn.log_softmax(_masked(logits, mask), axis=-1)
      total = total - jnp.take_along_axis(lp, act[..., None], -1).sum()
  return total / a.shape[0]


def train_imitation(policy: Policy, datasets: Sequence[dict], steps: int,
                    batch: int = 16, lr: float = 1e-3, seed: int = 0,
                    log_every: int = 0) -> tuple[Policy, list[float]]:
  """Behaviour cloning with optax's Adam over ``datasets`` (one per
  training layer, from :func:`imitation_data`), round robin, ``batch``
  trajectories of one layer per step.

  Returns:
    ``(trained policy, loss per step)``.
  """
  opt = optax.adam(lr)
  net, state = policy.params, opt.init(policy.params)
  module = policy.module

  @jax.jit
  def update(net, state, b):
    loss, grad = jax.value_and_grad(
        lambda p: imitation_loss(module, p, b))(net)
    upd, state = opt.update(grad, state, net)
    return optax.apply_updates(net, upd), state, loss

  rng = np.random.default_rng(seed)
  usable = [d for d in datasets if len(d["actions"])]
  losses = []
  for k in range(steps):
    d = usable[k % len(usable)]
    pick = rng.integers(0, len(d["actions"]), batch)
    b = {key: (v if key == "rows" else v[pick]) for key, v in d.items()}
    net, state, loss = update(net, state, b)
    losses.append(float(loss))
    if log_every and (k + 1) % log_every == 0:
      print(f"step {k + 1}: loss {np.mean(losses[-log_every:]):.3f}",
            flush=True)
  return Policy(module, net, dict(policy.meta)), losses
