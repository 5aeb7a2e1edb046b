"""Gradient-cache train step vs the plain step: peak memory and time for the same global batch, and the
largest global batch that fits each way (doubling search under a memory cap).

SimCLR, resnet_tiny (16-32-64-128), 32x32 views, head 256 -> 64, one CPU device, SGD. Every (mode,
batch) runs in a fresh subprocess; its peak resident memory (VmHWM) is read from /proc, and the
parent kills a child whose resident memory passes the cap (that batch "does not fit"). Batches >=
4096 use the tiled NT-Xent (tile 1024) in both modes, so that the loss's (2N)^2 similarity matrix is
not what limits.

    .venv/bin/python benchmarks/grad_cache.py                     # compare + search, cap 8 GB
    .venv/bin/python benchmarks/grad_cache.py --compare 512,1024 --chunk 128 --cap_gb 16 --search_to 65536

Writes benchmarks/results/grad_cache.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mb(pid: int, key: str = "VmRSS:") -> float:
  try:
    with open(f"/proc/{pid}/status") as f:
      for line in f:
        if line.startswith(key):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return 0.0


def worker(batch: int, chunk: int, steps: int) -> dict:
  """One child: build, compile, run `steps` timed steps; prints one JSON line."""
  sys.path.insert(0, ROOT)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import simclr_cifar10  # pylint: disable=g-import-not-at-top
  from contrastive_jax import grad_cache, methods, optim, sharding  # pylint: disable=g-import-not-at-top
  from contrastive_jax import step as step_lib  # pylint: disable=g-import-not-at-top

  c = simclr_cifar10.get_config("cpu")
  c.batch_size = batch
  c.optim.update(name="sgd", base_lr=0.1, lr_scaling="none")
  if batch >= 4096:
    c.method_args.loss_tile_size = 1024
  mesh = sharding.make_mesh()
  method = methods.get_method(c, 10)
  tx, sched = optim.create_optimizer(c.optim, batch_size=batch, total_steps=100, steps_per_epoch=10)
  state = step_lib.create_state(method, tx, c, mesh, (32, 32, 3))
  grad_fn = grad_cache.make_grad_fn(method, chunk) if chunk else None
  step = step_lib.make_train_step(method, tx, sched, mesh, grad_fn=grad_fn)
  rng = np.random.default_rng(0)
  host = {
    "view1": rng.uniform(size=(batch, 32, 32, 3)).astype(np.float32),
    "view2": rng.uniform(size=(batch, 32, 32, 3)).astype(np.float32),
    "label": rng.integers(0, 10, size=(batch,)).astype(np.int32),
  }
  gb = sharding.global_batch(host, mesh)
  base_mb = _rss_mb(os.getpid())
  t0 = time.perf_counter()
  state, m = step(state, gb)
  jax.block_until_ready(m)
  first_s = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, m = step(state, gb)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  step_s = sorted(times)[len(times) // 2] if times else first_s
  return {
    "batch": batch,
    "chunk": chunk,
    "ok": True,
    "compile_plus_first_s": first_s,
    "step_s": step_s,
    "pairs_per_s": batch / step_s,
    "loss": float(m["loss"]),
    "input_mb": base_mb,
    "peak_mb": _rss_mb(os.getpid(), "VmHWM:"),
  }


def run_child(batch: int, chunk: int, steps: int, cap_mb: float, timeout_s: float) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), "--worker", f"{batch},{chunk},{steps}"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("XLA_FLAGS", None)  # one device: the real CPU
  t0 = time.time()
  p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
  peak, why = 0.0, None
  while p.poll() is None:
    peak = max(peak, _rss_mb(p.pid))
    if peak > cap_mb:
      why = f"over the {cap_mb / 1024:.0f} GB cap"
    elif time.time() - t0 > timeout_s:
      why = f"over the {timeout_s:.0f} s time limit"
    if why:
      p.kill()
      p.wait()
      break
    time.sleep(0.1)
  out = p.stdout.read() if p.stdout else ""
  for line in out.splitlines()[::-1]:
    if line.startswith("{"):
      return json.loads(line)
  return {
    "batch": batch,
    "chunk": chunk,
    "ok": False,
    "why": why or f"exit code {p.returncode}",
    "peak_mb": peak,
    "wall_s": time.time() - t0,
  }


def search(
  chunk_rows: int, start: int, stop: int, cap_mb: float, timeout_s: float, budget_s: float, gc: bool
) -> tuple[int, list[dict]]:
  """Doubles the batch until a child fails (memory cap, time limit) or the time budget is spent."""
  best, rows, b, t_end = 0, [], start, time.time() + budget_s
  while b <= stop and time.time() < t_end:
    r = run_child(
      b, min(chunk_rows, b) if gc else 0, 0, cap_mb, min(timeout_s, t_end - time.time())
    )
    r["mode"] = "grad_cache" if gc else "plain"
    rows.append(r)
    print(_row(r), flush=True)
    if not r["ok"]:
      break
    best = b
    b *= 2
  return best, rows


def _row(r: dict) -> str:
  if not r["ok"]:
    return (
      f"{r.get('mode', ''):>10} {r['batch']:>7} {r['chunk']:>6}  did not fit/finish: {r['why']} "
      f"(peak {r['peak_mb']:.0f} MB)"
    )
  return (
    f"{r.get('mode', ''):>10} {r['batch']:>7} {r['chunk']:>6} {r['peak_mb']:>9.0f} MB "
    f"{r['step_s']:>8.2f} s {r['pairs_per_s']:>8.0f} pairs/s  (compile+1st {r['compile_plus_first_s']:.0f} s)"
  )


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--worker", help=argparse.SUPPRESS)
  ap.add_argument("--compare", default="256,1024", help="global batches for the side-by-side")
  ap.add_argument("--chunk", type=int, default=128, help="grad-cache rows per chunk")
  ap.add_argument("--steps", type=int, default=2, help="timed steps after the first")
  ap.add_argument("--cap_gb", type=float, default=8.0, help="resident-memory cap per child")
  ap.add_argument("--search_from", type=int, default=1024)
  ap.add_argument("--search_to", type=int, default=32768)
  ap.add_argument("--search_budget_s", type=float, default=900.0, help="per mode")
  ap.add_argument("--child_timeout_s", type=float, default=420.0)
  ap.add_argument("--no_search", action="store_true")
  ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "grad_cache.json"))
  args = ap.parse_args()
  if args.worker:
    b, c, s = map(int, args.worker.split(","))
    print(json.dumps(worker(b, c, s)), flush=True)
    return
  cap_mb = args.cap_gb * 1024
  print(f"{'mode':>10} {'batch':>7} {'chunk':>6} {'peak RSS':>12} {'step':>10} {'rate':>14}")
  compare = []
  for b in map(int, args.compare.split(",")):
    for gc in (False, True):
      r = run_child(b, min(args.chunk, b) if gc else 0, args.steps, cap_mb, args.child_timeout_s)
      r["mode"] = "grad_cache" if gc else "plain"
      compare.append(r)
      print(_row(r), flush=True)
  result = {
    "machine": f"{os.cpu_count()} CPU cores (shared), 1 JAX CPU device",
    "model": "resnet_tiny, 32x32, head 256->64, SimCLR",
    "cap_gb": args.cap_gb,
    "chunk": args.chunk,
    "compare": compare,
  }
  if not args.no_search:
    for gc in (False, True):
      best, rows = search(
        args.chunk,
        args.search_from,
        args.search_to,
        cap_mb,
        args.child_timeout_s,
        args.search_budget_s,
        gc,
      )
      result["largest_plain" if not gc else "largest_grad_cache"] = best
      result["search_plain" if not gc else "search_grad_cache"] = rows
    print(
      f"Largest global batch that fit under {args.cap_gb:.0f} GB within the time limits: "
      f"plain {result['largest_plain']}, grad cache (chunk {args.chunk}) "
      f"{result['largest_grad_cache']}."
    )
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  print(f"Wrote {args.out}")


if __name__ == "__main__":
  main()
