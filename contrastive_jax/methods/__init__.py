"""Pre-training methods, one module each, found by name (config.method).

Every module exports `create(config, num_classes) -> base.Method`; see base.py for the API.
"""

import importlib
import inspect
import pkgutil


def available() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("base",))


def get_method(config, num_classes: int, total_steps: int | None = None):
  """Imports contrastive_jax.methods.<config.method> and calls its create().

  `total_steps` (the resolved run length) reaches create() when it takes a `total_steps` argument
  (methods with schedules, e.g. EMA momentum annealed to 1); others never see it.
  """
  name = config.method
  if name not in available():
    raise ValueError(
      f"config.method={name!r} is not a method here; choose one of {available()} "
      f"(one module each in contrastive_jax/methods/)."
    )
  module = importlib.import_module(f"{__name__}.{name}")
  if "total_steps" in inspect.signature(module.create).parameters:
    return module.create(config, num_classes, total_steps=total_steps)
  return module.create(config, num_classes)
