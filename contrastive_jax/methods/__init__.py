"""Pre-training methods, one module each, found by name (config.method).

Every module exports `create(config, num_classes) -> base.Method`; see base.py for the API.
"""
import importlib
import pkgutil


def available() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("base",))


def get_method(config, num_classes: int):
  """Imports contrastive_jax.methods.<config.method> and calls its create()."""
  name = config.method
  if name not in available():
    raise ValueError(f"config.method={name!r} is not a method here; choose one of {available()} "
                     f"(one module each in contrastive_jax/methods/).")
  module = importlib.import_module(f"{__name__}.{name}")
  return module.create(config, num_classes)
