"""Flax surrogates of the exact model: log energy, log cycles and validity
of a mapping from its features.

>>> ex = examples_from_dataset("data/", manifest["files"])
>>> model, losses = train(ex, SurrogateConfig(steps=4000))
>>> scores(model, heldout)             # Spearman of log EDP, MAPE
>>> model.save("surrogate.msgpack"); Surrogate.load("surrogate.msgpack")

Input ``x = [mapping features, layer features, architecture features]``
(:mod:`jaxloop.research.features`, ``F = F_map + F_layer + F_arch``),
standardized with the training set's mean and deviation.  An MLP
(:class:`MLP`, ``flax.linen``) gives three outputs: standardized
``ln(energy_pj)`` and ``ln(cycles)`` (regressed on the valid rows only)
and a validity logit (binary cross-entropy on every row).  Trained with
``optax.adamw`` under a cosine learning-rate schedule.  ``ln EDP`` in
J*cycles is ``ln energy_pj + ln cycles + ln 1e-12``.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxloop.errors import SpecError
from jaxloop.research import dataset, features

FORMAT = "jaxloop.surrogate"
VERSION = 1
LN_PJ_TO_J = math.log(1e-12)


@dataclasses.dataclass(frozen=True)
class SurrogateConfig:
  """Model size and training settings.

  Attributes:
    hidden: widths of the hidden layers.
    learning_rate: peak AdamW rate (cosine decay over ``steps``).
    weight_decay: AdamW decoupled weight decay.
    batch: rows per step; ``steps``: optimizer steps; ``seed``.
    valid_weight: weight of the validity loss against the regression.
  """
  hidden: tuple[int, ...] = (512, 512, 256)
  learning_rate: float = 1e-3
  weight_decay: float = 1e-4
  batch: int = 1024
  steps: int = 4000
  seed: int = 0
  valid_weight: float = 0.2


class MLP(nn.Module):
  """``[B, F] -> [B, 3]``: dense layers with GELU, then three outputs."""
  hidden: tuple[int, ...]

  @nn.compact
  def __call__(self, x):
    for width in self.hidden:
      x = nn.gelu(nn.Dense(width, param_dtype=jnp.float32)(x))
    return nn.Dense(3, param_dtype=jnp.float32)(x)


@dataclasses.dataclass
class Examples:
  """Training or evaluation rows, the per-file context stored once.

  Attributes:
    mapping: ``f32[N, F_map]`` encoded mappings.
    context: ``f32[G, F_layer + F_arch]`` features of each file (group).
    group: ``i32[N]`` each row's group.
    target: ``f32[N, 2]`` ``ln energy_pj`` and ``ln cycles``.
    valid: ``bool[N]``.
    names: ``[G]`` ``(arch, layer)`` of each group.
  """
  mapping: np.ndarray
  context: np.ndarray
  group: np.ndarray
  target: np.ndarray
  valid: np.ndarray
  names: list

  def __len__(self) -> int:
    return len(self.group)

  def inputs(self, idx=slice(None)) -> np.ndarray:
    """``f32[n, F]`` full inputs of rows ``idx``."""
    return np.concatenate([self.mapping[idx],
                           self.context[self.group[idx]]], axis=1)


def examples_from_dataset(directory, entries: Sequence[dict],
                          rows_per_file: Optional[int] = None,
                          seed: int = 0,
                          part: tuple[float, float] = (0.0, 1.0)
                          ) -> Examples:
  """:class:`Examples` of manifest ``entries`` (files of ``directory``):
  of each file the rows in the fraction ``part`` of its length (e.g.
  ``(0, 0.8)`` to train, ``(0.8, 1)`` to test on other rows of the same
  pairs), at most ``rows_per_file`` random ones of those."""
  rng = np.random.default_rng(seed)
  parts, contexts, names = [], [], []
  for g, entry in enumerate(entries):
    table, meta = dataset.read_dataset(Path(directory) / entry["file"])
    n = table.num_rows
    table = table.slice(int(part[0] * n), int(part[1] * n) - int(part[0] * n))
    if rows_per_file is not None and table.num_rows > rows_per_file:
      table = table.take(np.sort(rng.choice(table.num_rows, rows_per_file,
                                            replace=False)))
    enc = np.asarray(jax.jit(features.encode_mapping)(
        dataset.table_mapping(table, meta)))
    energy = table.column("energy_pj").to_numpy()
    cycles = table.column("cycles").to_numpy().astype(np.float64)
    target = np.stack([np.log(energy), np.log(cycles)], 1)
    valid = table.column("valid").to_numpy(zero_copy_only=False)
    parts.append((enc, np.full(len(enc), g, np.int32),
                  target.astype(np.float32), valid))
    contexts.append(np.concatenate([meta["layer_features"],
                                    meta["arch_features"]]))
    names.append((entry["arch"], entry["layer"]))
  cat = lambda i: np.concatenate([p[i] for p in parts])
  return Examples(mapping=cat(0), context=np.asarray(contexts, np.float32),
                  group=cat(1), target=cat(2), valid=cat(3), names=names)


@dataclasses.dataclass
class Surrogate:
  """A trained model with its input and output standardization.

  Attributes:
    config: the :class:`SurrogateConfig`.
    params: flax parameters.
    x_mean, x_std: ``[F]``; ``y_mean``, ``y_std``: ``[2]``.
  """
  config: SurrogateConfig
  params: dict
  x_mean: np.ndarray
  x_std: np.ndarray
  y_mean: np.ndarray
  y_std: np.ndarray

  def predict(self, x: jax.Array) -> jax.Array:
    """``f32[..., 3]``: ``ln energy_pj``, ``ln cycles`` and the validity
    logit of inputs ``x [..., F]`` (traceable, differentiable in x)."""
    x = jnp.asarray(x, jnp.float32)
    lead = lambda a: jnp.reshape(jnp.asarray(a, jnp.float32),
                                 (1,) * (x.ndim - 1) + (-1,))
    z = (x - lead(self.x_mean)) / lead(self.x_std)
    out = MLP(self.config.hidden).apply({"params": self.params}, z)
    costs = out[..., :2] * lead(self.y_std) + lead(self.y_mean)
    return jnp.concatenate([costs, out[..., 2:]], axis=-1)

  def log_edp(self, x: jax.Array) -> jax.Array:
    """``f32[...]`` predicted ``ln EDP`` (J*cycles)."""
    p = self.predict(x)
    return p[..., 0] + p[..., 1] + LN_PJ_TO_J

  def save(self, path) -> None:
    """Writes the config, standardization and parameters (msgpack)."""
    state = {"format": FORMAT, "version": VERSION,
             "config": _config_dict(self.config),
             "feature_width": int(self.x_mean.shape[0]),
             "norm": {k: np.asarray(getattr(self, k)) for k in
                      ("x_mean", "x_std", "y_mean", "y_std")},
             "params": jax.tree.map(np.asarray, self.params)}
    Path(path).write_bytes(flax.serialization.msgpack_serialize(state))

  @classmethod
  def load(cls, path) -> "Surrogate":
    """Reads :meth:`save`'s file.

    Raises:
      SpecError: not a surrogate checkpoint, another format version, or
        features of another width than this jaxloop's.
    """
    try:
      state = flax.serialization.msgpack_restore(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as e:
      raise SpecError(f"cannot read a surrogate checkpoint: {e}",
                      where=str(path), hint="Pass a file written by "
                      "Surrogate.save.") from None
    _check_checkpoint(state, path)
    cfg = dict(state["config"])
    cfg["hidden"] = tuple(int(h) for h in cfg["hidden"].values()) if \
        isinstance(cfg["hidden"], dict) else tuple(cfg["hidden"])
    norm = state["norm"]
    return cls(config=SurrogateConfig(**cfg), params=state["params"],
               x_mean=norm["x_mean"], x_std=norm["x_std"],
               y_mean=norm["y_mean"], y_std=norm["y_std"])


def feature_width() -> int:
  """``F`` of this jaxloop's features."""
  return (features.mapping_width() + len(features.layer_feature_names())
          + len(features.arch_feature_names()))


def _config_dict(config: SurrogateConfig) -> dict:
  d = dataclasses.asdict(config)
  d["hidden"] = list(config.hidden)
  return d


def _check_checkpoint(state, path) -> None:
  if not isinstance(state, dict) or state.get("format") != FORMAT:
    raise SpecError("not a jaxloop surrogate checkpoint", where=str(path),
                    hint="Pass a file written by Surrogate.save.")
  if state.get("version") != VERSION or state.get(
      "feature_width") != feature_width():
    raise SpecError(
        f"surrogate checkpoint version {state.get('version')} with "
        f"{state.get('feature_width')} features; this jaxloop reads version "
        f"{VERSION} with {feature_width()}", where=str(path),
        hint="Train the surrogate again with this jaxloop.")


# ----------------------------------------------------------------- training
def _standardization(ex: Examples) -> tuple:
  """``(x_mean, x_std, y_mean, y_std)`` of the rows (targets: valid rows);
  constant columns get deviation 1."""
  x = ex.inputs()
  x_std = x.std(0)
  y = ex.target[ex.valid] if ex.valid.any() else ex.target
  return (x.mean(0), np.where(x_std > 1e-6, x_std, 1.0).astype(np.float32),
          y.mean(0), np.maximum(y.std(0), 1e-6).astype(np.float32))


def _loss_fn(model: MLP, valid_weight: float) -> Callable:
  """``loss(params, z [B, F], y [B, 2], valid [B]) -> []``: mean squared
  error of the standardized costs over valid rows plus ``valid_weight``
  times the validity cross-entropy."""

  def loss(params, z, y, valid):
    out = model.apply({"params": params}, z)
    w = valid.astype(jnp.float32)
    mse = jnp.sum(w[:, None] * (out[:, :2] - y) ** 2) / (
        2.0 * jnp.maximum(jnp.sum(w), 1.0))
    bce = jnp.mean(optax.sigmoid_binary_cross_entropy(out[:, 2], w))
    return mse + valid_weight * bce

  return loss


def train(ex: Examples, config: SurrogateConfig = SurrogateConfig(),
          on_step: Optional[Callable[[int, float], None]] = None
          ) -> tuple[Surrogate, np.ndarray]:
  """Fits a :class:`Surrogate` to ``ex``; returns it and the per-step
  training losses ``[steps]``.

  Each step draws ``config.batch`` random rows (numpy generator seeded by
  ``config.seed``) and takes one AdamW step (jitted once).

  Raises:
    SpecError: no rows.
  """
  if not len(ex):
    raise SpecError("no training rows", path="examples",
                    hint="Pass dataset files with rows.")
  x_mean, x_std, y_mean, y_std = _standardization(ex)
  model = MLP(tuple(config.hidden))
  params = model.init(jax.random.PRNGKey(config.seed),
                      jnp.zeros((1, x_mean.shape[0]), jnp.float32))["params"]
  schedule = optax.cosine_decay_schedule(config.learning_rate, config.steps)
  tx = optax.adamw(schedule, weight_decay=config.weight_decay)
  opt_state = tx.init(params)
  grad = jax.value_and_grad(_loss_fn(model, config.valid_weight))

  @jax.jit
  def step(params, opt_state, z, y, valid):
    loss, g = grad(params, z, y, valid)
    updates, opt_state = tx.update(g, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(config.seed)
  losses = np.zeros(config.steps)
  for t in range(config.steps):
    idx = rng.integers(0, len(ex), config.batch)
    z = (ex.inputs(idx) - x_mean) / x_std
    y = (ex.target[idx] - y_mean) / y_std
    params, opt_state, loss = step(params, opt_state, z, y, ex.valid[idx])
    losses[t] = float(loss)
    if on_step is not None:
      on_step(t, losses[t])
  return Surrogate(config, params, x_mean.astype(np.float32), x_std,
                   y_mean.astype(np.float32), y_std), losses


# ---------------------------------------------------------------- accuracy
def predict_examples(model: Surrogate, ex: Examples,
                     batch: int = 65536) -> np.ndarray:
  """``f32[N, 3]`` predictions of every row (batched, jitted)."""
  fn = jax.jit(model.predict)
  return np.concatenate([np.asarray(fn(ex.inputs(slice(i, i + batch))))
                         for i in range(0, len(ex), batch)])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman rank correlation (ties get their average rank)."""
  return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def _ranks(a: np.ndarray) -> np.ndarray:
  order = np.argsort(a, kind="stable")
  r = np.empty(len(a))
  r[order] = np.arange(len(a))
  _, inv = np.unique(a, return_inverse=True)
  return (np.bincount(inv, r) / np.bincount(inv))[inv]


def scores(model: Surrogate, ex: Examples) -> dict:
  """Accuracy on ``ex``'s valid rows (validity on all rows).

  Returns:
    ``spearman_edp`` (predicted vs exact ``ln EDP``), ``mape_energy``,
    ``mape_cycles``, ``mape_edp`` (mean ``|pred - exact| / exact`` in
    linear units), ``valid_accuracy`` and ``rows``/``valid_rows``; plus
    ``spearman_edp_per_group``: the mean of the per-file Spearman
    coefficients (ranking within one layer on one architecture, what a
    search needs).
  """
  pred = predict_examples(model, ex)
  v = ex.valid
  exact = ex.target[v].astype(np.float64)
  guess = pred[v, :2].astype(np.float64)
  ape = np.abs(np.expm1(guess - exact))          # |pred / exact - 1|
  edp_exact, edp_guess = exact.sum(1), guess.sum(1)
  per_group = [spearman(edp_guess[ex.group[v] == g],
                        edp_exact[ex.group[v] == g])
               for g in np.unique(ex.group[v])
               if np.sum(ex.group[v] == g) > 2]
  return {"rows": int(len(ex)), "valid_rows": int(v.sum()),
          "spearman_edp": spearman(edp_guess, edp_exact),
          "spearman_edp_per_group": float(np.mean(per_group)),
          "mape_energy": float(ape[:, 0].mean()),
          "mape_cycles": float(ape[:, 1].mean()),
          "mape_edp": float(np.abs(np.expm1(edp_guess - edp_exact)).mean()),
          "valid_accuracy": float(np.mean((pred[:, 2] > 0) == v))}
