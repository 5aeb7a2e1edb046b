"""The non-finite guard: a NaN/inf loss or gradient never reaches the train state or a checkpoint.

Two halves:
- `guard(step_body)` (inside the jitted step): when the loss or the gradient norm is not finite, the
  step keeps the old params, BN statistics, optimiser and method state (it only advances `step`, so
  the data stream and random keys move on) and reports `nonfinite=1` in its metrics. The state is
  therefore always finite, whatever the policy.
- `Monitor.check(pending)` (on the host, before every log AND before every checkpoint save): with
  config.nan_policy='stop' the first non-finite step raises `NonFiniteError` naming the step, the
  last finite metrics and the last good checkpoint; with 'skip' skipped steps are counted and the
  run stops once more than config.max_skipped_steps were skipped.
"""

import math
from typing import Any
from collections.abc import Callable

import jax
import jax.numpy as jnp

NONFINITE = "nonfinite"


class NonFiniteError(FloatingPointError):
  """A non-finite loss or gradient under nan_policy='stop' (or too many skipped steps)."""


def guard(step_body: Callable) -> Callable:
  """Wraps `(state, batch) -> (new_state, metrics)`; metrics must hold 'loss' and 'grad_norm'."""

  def guarded(state, batch):
    new_state, m = step_body(state, batch)
    finite = jnp.isfinite(m["loss"]) & jnp.isfinite(m["grad_norm"])
    kept = jax.tree.map(
      lambda new, old: jnp.where(finite, new, old), new_state.replace(step=state.step), state
    )
    m = dict(m)
    m[NONFINITE] = 1.0 - finite.astype(jnp.float32)
    return kept.replace(step=new_state.step), m

  return guarded


class Monitor:
  """Host-side policy over the metrics of finished steps; `skipped` survives restarts via meta."""

  def __init__(self, policy: str, max_skipped: int, skipped: int = 0):
    if policy not in ("stop", "skip"):
      raise ValueError(f"config.nan_policy={policy!r}: use 'stop' or 'skip'.")
    self.policy, self.max_skipped, self.skipped = policy, int(max_skipped), int(skipped)
    self.last_finite: tuple[int, dict] | None = None

  def check(self, host_metrics: list[tuple[int, dict]], last_checkpoint: Callable[[], str]) -> None:
    """Raises NonFiniteError to stop the run.

    Args:
      host_metrics: [(step, {name: float})] of finished steps, in step order.
      last_checkpoint: returns the path of the last good checkpoint (called only to report it).
    """
    for step, m in host_metrics:
      bad = m.get(NONFINITE, 0.0) > 0 or not all(math.isfinite(v) for v in m.values())
      if not bad:
        self.last_finite = (step, m)
        continue
      if self.policy == "skip" and self.skipped < self.max_skipped:
        self.skipped += 1
        continue
      why = (
        f"more than config.max_skipped_steps={self.max_skipped} non-finite steps were skipped"
        if self.policy == "skip"
        else "config.nan_policy='stop'"
      )
      last = (
        f"step {self.last_finite[0]}: " + _fmt(self.last_finite[1])
        if self.last_finite
        else "none in this run"
      )
      raise NonFiniteError(
        f"Non-finite loss or gradient at step {step} ({why}); metrics there: {_fmt(m)}.\n"
        f"  Last finite metrics: {last}.\n"
        f"  Last good checkpoint (left intact, no non-finite state was saved): {last_checkpoint()}.\n"
        f"  Fix: lower config.optim.base_lr, set config.optim.grad_clip_norm, or use "
        f"config.nan_policy='skip'."
      )


def _fmt(m: dict[str, Any]) -> str:
  return ", ".join(f"{k}={v:.6g}" for k, v in sorted(m.items()) if k != NONFINITE)
