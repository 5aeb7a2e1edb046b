"""Grids of pre-training runs from one config: batch size x epochs x LR scaling rule x temperature.

A sweep config is an ordinary pre-training config with `mode='sweep'` and a `sweep` ConfigDict:

  sweep.action        'run' (here, one run after another) | 'print' (one launch command per run)
  sweep.config_file   'configs/x.py:preset' of this config (used in the printed commands)
  sweep.batch_sizes   global batch sizes, e.g. (256, 512, ..., 8192)
  sweep.epochs        epoch budgets, e.g. (100, 200)
  sweep.lr_scalings   LR rules, ('linear', 'sqrt'): peak LR = base * B / 256 or base * sqrt(B)
  sweep.base_lr       {rule: base LR}, SimCLR Appendix B.1: linear 0.3, sqrt 0.075 (ImageNet)
  sweep.temperatures  NT-Xent temperatures
  sweep.max_device_batch  per-device rows above which a run uses the gradient cache, with chunks of at
                      most this many rows (0: never)
  sweep.num_devices   devices of the target machine for 'print' (0: this machine's count)
  sweep.launcher      command prefix of the printed lines

Each run gets its own sub-workdir named by its values, W/bs256_ep100_sqrt_t0.1, with the same fields
overridden whether it runs here or on a cluster (`run_overrides` is the one source of both). A run
is finished when its results.json holds `train_time_s` (written at the very end of
train_and_evaluate); finished runs are skipped, unfinished ones resume from their last checkpoint. A
failing run is logged in W/sweep_status.json and the sweep moves on; the sweep raises at the end if
any run failed. The table and figure of a finished sweep: python -m contrastive_jax.batch_scaling.
"""

import itertools
import json
import os
import shlex
import time
import traceback
from typing import Any
from collections.abc import Callable

import jax
from absl import logging

from contrastive_jax import train

AXES = ("batch_sizes", "epochs", "lr_scalings", "temperatures")
DONE_KEY = "train_time_s"


def _fmt_num(x: float) -> str:
  x = float(x)
  return str(int(x)) if x == int(x) else f"{x:g}"


def run_name(point: dict) -> str:
  """bs{B}_ep{E}_{rule}_t{T}: e.g. bs256_ep10_sqrt_t0.5."""
  return (
    f"bs{int(point['batch_size'])}_ep{_fmt_num(point['epochs'])}_{point['lr_scaling']}"
    f"_t{_fmt_num(point['temperature'])}"
  )


def grid(sweep_cfg) -> list[dict]:
  """All points of the grid, batch size fastest-varying last (small, quick runs first)."""
  missing = [a for a in AXES if not sweep_cfg.get(a)]
  if missing:
    raise ValueError(
      f"config.sweep.{missing[0]} is empty; list at least one value "
      f"(axes: {', '.join('sweep.' + a for a in AXES)})."
    )
  pts = []
  for ep, rule, t, bs in itertools.product(
    sweep_cfg.epochs, sweep_cfg.lr_scalings, sweep_cfg.temperatures, sweep_cfg.batch_sizes
  ):
    if rule not in sweep_cfg.base_lr:
      raise ValueError(
        f"config.sweep.lr_scalings has {rule!r} but config.sweep.base_lr has no "
        f"entry for it; add config.sweep.base_lr.{rule}."
      )
    pts.append(
      {"batch_size": int(bs), "epochs": float(ep), "lr_scaling": str(rule), "temperature": float(t)}
    )
  return pts


def grad_cache_chunk(batch_size: int, num_devices: int, max_device_batch: int) -> int:
  """0 when the per-device batch fits; else the largest divisor of it that is <= max_device_batch."""
  if batch_size % num_devices:
    raise ValueError(
      f"sweep.batch_sizes has {batch_size}, not a multiple of the {num_devices} devices."
    )
  local = batch_size // num_devices
  if not max_device_batch or local <= max_device_batch:
    return 0
  return max(d for d in range(1, max_device_batch + 1) if local % d == 0)


def run_overrides(config, point: dict, num_devices: int) -> dict[str, Any]:
  """The config fields one run changes (dotted names), in launch-command order."""
  sw = config.sweep
  return {
    "mode": "pretrain",
    "batch_size": point["batch_size"],
    "total_epochs": point["epochs"],
    "optim.lr_scaling": point["lr_scaling"],
    "optim.base_lr": float(sw.base_lr[point["lr_scaling"]]),
    "method_args.temperature": point["temperature"],
    "grad_cache_chunk": grad_cache_chunk(
      point["batch_size"], num_devices, int(sw.get("max_device_batch", 0))
    ),
  }


def run_config(config, point: dict, num_devices: int):
  """A pre-training config for one point (a copy; the sweep config is left as it is)."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    for field, value in run_overrides(config, point, num_devices).items():
      target = c
      *path, last = field.split(".")
      for p in path:
        target = target[p]
      target[last] = value
  return c


def is_finished(run_dir: str) -> bool:
  path = os.path.join(run_dir, "results.json")
  if not os.path.exists(path):
    return False
  try:
    with open(path, encoding="utf-8") as f:
      return DONE_KEY in json.load(f)
  except (OSError, ValueError):
    return False


def _value(v) -> str:
  if isinstance(v, float):
    return _fmt_num(v)
  return str(v)


def launch_command(config, point: dict, workdir: str, num_devices: int) -> str:
  sw = config.sweep
  parts = [
    sw.get("launcher", "python -m contrastive_jax.main"),
    f"--config={shlex.quote(sw.config_file)}",
    f"--workdir={shlex.quote(os.path.join(workdir, run_name(point)))}",
  ]
  parts += [
    f"--config.{k}={shlex.quote(_value(v))}"
    for k, v in run_overrides(config, point, num_devices).items()
  ]
  return " ".join(parts)


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def print_commands(config, workdir: str, num_devices: int, out=print) -> list[str]:
  """One launch command per run (finished ones commented out); also written to W/launch_commands.sh."""
  lines = []
  for p in grid(config.sweep):
    cmd = launch_command(config, p, workdir, num_devices)
    done = is_finished(os.path.join(workdir, run_name(p)))
    lines.append(("# finished: " if done else "") + cmd)
  for line in lines:
    out(line)
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "launch_commands.sh"), "w", encoding="utf-8") as f:
      f.write("#!/bin/sh\n# One pre-training run per line; each resumes from its workdir.\n")
      f.write("\n".join(lines) + "\n")
  except OSError:  # e.g. a gs:// workdir: printing is enough
    pass
  return lines


def run_all(
  config, workdir: str, *, num_devices: int, train_fn: Callable[[Any, str], dict] | None = None
) -> dict[str, str]:
  """Runs the grid here, one run after another, skipping finished runs; returns {name: status}.

  Args:
    config: the sweep config.
    workdir: the sweep directory W; run r lives in W/<run_name(r)>.
    num_devices: devices of this machine (for the gradient-cache choice).
    train_fn: (run config, run workdir) -> results; train.train_and_evaluate by default.

  Raises:
    RuntimeError: when some run failed (after trying all the others).
  """
  train_fn = train_fn or train.train_and_evaluate
  os.makedirs(workdir, exist_ok=True)
  points = grid(config.sweep)
  _write_json(
    os.path.join(workdir, "sweep.json"),
    {"runs": [{"name": run_name(p), **p} for p in points], "config": json.loads(config.to_json())},
  )
  status_path = os.path.join(workdir, "sweep_status.json")
  status: dict[str, str] = {}
  for i, p in enumerate(points):
    name = run_name(p)
    run_dir = os.path.join(workdir, name)
    if is_finished(run_dir):
      logging.info("[%d/%d] %s: finished, skipped.", i + 1, len(points), name)
      status[name] = "finished"
      continue
    rc = run_config(config, p, num_devices)
    os.makedirs(run_dir, exist_ok=True)
    _write_json(
      os.path.join(run_dir, "sweep_run.json"),
      {
        "name": name,
        **p,
        **run_overrides(config, p, num_devices),
        "dataset": rc.dataset,
        "model": rc.model.name,
        "num_devices": num_devices,
      },
    )
    logging.info(
      "[%d/%d] %s: batch %d, %s epochs, %s LR (base %g), temperature %g, grad cache %d.",
      i + 1,
      len(points),
      name,
      p["batch_size"],
      _fmt_num(p["epochs"]),
      p["lr_scaling"],
      rc.optim.base_lr,
      p["temperature"],
      rc.grad_cache_chunk,
    )
    t0 = time.time()
    try:
      train_fn(rc, run_dir)
      status[name] = "finished"
    except Exception:  # pylint: disable=broad-except
      logging.error("Run %s failed:\n%s", name, traceback.format_exc())
      status[name] = "failed: " + traceback.format_exc(limit=1).strip().splitlines()[-1]
    logging.info("%s: %s in %.0fs.", name, status[name], time.time() - t0)
    _write_json(status_path, status)
  _write_json(status_path, status)
  failed = [n for n, s in status.items() if s.startswith("failed")]
  if failed:
    raise RuntimeError(
      f"{len(failed)} of {len(points)} sweep runs failed ({', '.join(failed)}); "
      f"see {status_path} and the log. Rerun the same command to retry them."
    )
  return status


def main(config, workdir: str) -> dict:
  """mode='sweep': config.sweep.action 'run' or 'print'."""
  action = config.sweep.get("action", "run")
  num_devices = int(config.sweep.get("num_devices", 0)) or jax.device_count()
  if action == "print":
    return {"commands": len(print_commands(config, workdir, num_devices))}
  if action == "run":
    if jax.process_count() > 1:
      raise ValueError(
        "config.sweep.action='run' runs one run after another on this machine; on a "
        "multi-host cluster use config.sweep.action='print' and launch each command."
      )
    status = run_all(config, workdir, num_devices=jax.device_count())
    return {"runs": len(status)}
  raise ValueError(f"config.sweep.action={action!r}: use 'run' or 'print'.")
