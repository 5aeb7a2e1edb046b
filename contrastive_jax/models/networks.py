"""ContrastiveNet: encoder -> projector -> (predictor), plus an online linear probe on detached features."""

import flax.linen as nn
import jax


class ContrastiveNet(nn.Module):
  """Wraps an encoder and heads; parameters live under 'encoder', 'projector', 'predictor' and 'probe'.

  `__call__(x, train)` returns a dict:
    features: encoder output h (b, d).
    proj: projector(h), or None without a projector.
    pred: predictor(proj) (predictor(h) without a projector), or None.
    probe_logits: Dense(num_classes) on stop_gradient(h), or None when num_classes == 0. The
      stop_gradient makes the online probe a pure monitor: its loss never changes the encoder.
  """

  encoder: nn.Module
  projector: nn.Module | None
  predictor: nn.Module | None = None
  num_classes: int = 0

  @nn.compact
  def __call__(self, x, train: bool):
    h = self.encoder(x, train=train)
    z = self.projector(h, train=train) if self.projector is not None else None
    p = None
    if self.predictor is not None:
      p = self.predictor(h if z is None else z, train=train)
    logits = None
    if self.num_classes:
      logits = nn.Dense(self.num_classes, name="probe")(jax.lax.stop_gradient(h))
    return dict(features=h, proj=z, pred=p, probe_logits=logits)

  def embed(self, x):
    """Representation h in eval mode (running BN statistics, no collectives)."""
    return self.encoder(x, train=False)
