"""NT-Xent loss + gradient: dense vs tiled time and peak memory, against the matmul floor.

Each (N, implementation) runs in a fresh subprocess so peak process memory (VmHWM) is its own.

    .venv/bin/python benchmarks/loss.py                       # all sizes, writes benchmarks/results/loss.json
    .venv/bin/python benchmarks/loss.py --sizes 1024,4096 --tile 512

The floor is the time of the two unavoidable matmuls of the 2N x 2N problem (similarities
(2N,d)x(d,2N) and the gradient's (2N,2N)x(2N,d)) at this machine's measured matmul rate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

DEFAULT_SIZES = (256, 1024, 4096, 8192, 16384, 32768, 65536)
DENSE_LIMIT_BYTES = 12e9  # skip dense when ~4 live (2N, 2N) float32 matrices exceed this


def _peak_rss_mb() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024.0
  return float("nan")


def _time(fn, args, repeats: int, warmup: bool):
  import jax

  if warmup:
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  times.sort()
  return times[len(times) // 2]


def worker(n: int, d: int, mode: str, tile: int, temperature: float) -> dict:
  import jax
  import jax.numpy as jnp

  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from contrastive_jax import losses

  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  z1 = jax.random.normal(k1, (n, d), jnp.float32)
  z2 = jax.random.normal(k2, (n, d), jnp.float32)
  tile_size = tile if mode == "tiled" else None
  fn = jax.jit(
    jax.value_and_grad(
      lambda a, b: losses.nt_xent(a, b, temperature, tile_size=tile_size), argnums=(0, 1)
    )
  )
  t0 = time.perf_counter()
  compiled = fn.lower(z1, z2).compile()
  compile_s = time.perf_counter() - t0
  # Big problems: one timed run straight after AOT compilation (no separate warm-up).
  big = (2 * n) ** 2 * d >= 2 * 16384**2 * 128
  repeats = 1 if big else (3 if n >= 4096 else 5)
  step_s = _time(compiled, (z1, z2), repeats, warmup=not big)
  loss, _ = compiled(z1, z2)
  return dict(
    n=n,
    d=d,
    mode=mode,
    tile=tile_size,
    time_s=step_s,
    compile_s=compile_s,
    repeats=repeats,
    loss=float(loss),
    peak_rss_mb=_peak_rss_mb(),
  )


def matmul_gflops(d: int, m: int = 8192) -> float:
  """Best measured matmul rate: a compute-bound square matmul and the loss's own two shapes at 2N = m
  ((m,d)x(d,m), memory-bound on CPU because of its m x m output, and (m,m)x(m,d)). The best of
  several
  runs is used, so the floor is not inflated by other processes sharing the CPU."""
  import jax
  import jax.numpy as jnp

  a = jnp.ones((m, d), jnp.float32)
  s = jnp.ones((m, m), jnp.float32)
  q = jnp.ones((2048, 2048), jnp.float32)

  def best(fn, args, flops):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(5):
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times.append(time.perf_counter() - t0)
    return flops / min(times) / 1e9

  rates = [
    best(jax.jit(lambda x: x @ x), (q,), 2 * 2048**3),
    best(jax.jit(lambda x: x @ x.T), (a,), 2 * m * m * d),
    best(jax.jit(lambda s, x: s @ x), (s, a), 2 * m * m * d),
  ]
  return max(rates)


def _run_worker(n, d, mode, tile, temperature, timeout):
  cmd = [
    sys.executable,
    os.path.abspath(__file__),
    "--worker",
    "--n",
    str(n),
    "--d",
    str(d),
    "--mode",
    mode,
    "--tile",
    str(tile),
    "--temperature",
    str(temperature),
  ]
  try:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    return dict(n=n, d=d, mode=mode, error=f"timeout after {timeout} s")
  if out.returncode != 0:
    return dict(
      n=n, d=d, mode=mode, error=out.stderr.strip().splitlines()[-1] if out.stderr else "failed"
    )
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument(
    "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated N (pairs)"
  )
  p.add_argument("--d", type=int, default=128)
  p.add_argument("--tile", type=int, default=512)
  p.add_argument("--temperature", type=float, default=0.1)
  p.add_argument("--modes", default="dense,tiled")
  p.add_argument("--timeout", type=int, default=1800, help="seconds per configuration")
  p.add_argument(
    "--out",
    default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "loss.json"),
  )
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--n", type=int, help=argparse.SUPPRESS)
  p.add_argument("--mode", help=argparse.SUPPRESS)
  args = p.parse_args()

  if args.worker:
    print(json.dumps(worker(args.n, args.d, args.mode, args.tile, args.temperature)))
    return

  import jax

  gflops = matmul_gflops(args.d)
  print(
    f"# jax {jax.__version__}, {os.cpu_count()} CPU cores, backend {jax.default_backend()}, "
    f"matmul {gflops:.1f} GFLOP/s, d={args.d}, tile={args.tile}, float32, loss+grad of nt_xent"
  )
  header = (
    f"{'N pairs':>8} {'floor s':>9} {'dense s':>9} {'tiled s':>9} {'tiled/dense':>11} "
    f"{'tiled/floor':>11} {'dense MB':>9} {'tiled MB':>9}"
  )
  print(header)
  rows = []
  for n in [int(s) for s in args.sizes.split(",")]:
    floor_s = 2 * (2 * (2 * n) ** 2 * args.d) / (gflops * 1e9)
    res = {}
    for mode in args.modes.split(","):
      if mode == "dense" and 4 * (2 * n) ** 2 * 4 > DENSE_LIMIT_BYTES:
        res[mode] = dict(n=n, mode=mode, skipped="does not fit")
        continue
      res[mode] = _run_worker(n, args.d, mode, args.tile, args.temperature, args.timeout)
    dense, tiled = res.get("dense", {}), res.get("tiled", {})
    fmt = lambda r, k, f="{:9.3f}": f.format(r[k]) if k in r else f"{'-':>9}"
    ratio = lambda a, b: f"{a / b:11.2f}" if a and b else f"{'-':>11}"
    print(
      f"{n:>8} {floor_s:9.3f} {fmt(dense, 'time_s')} {fmt(tiled, 'time_s')} "
      f"{ratio(tiled.get('time_s'), dense.get('time_s'))} {ratio(tiled.get('time_s'), floor_s)} "
      f"{fmt(dense, 'peak_rss_mb', '{:9.0f}')} {fmt(tiled, 'peak_rss_mb', '{:9.0f}')}",
      flush=True,
    )
    for r in res.values():
      if "error" in r:
        print(f"#   {r['mode']} N={n}: {r['error']}", flush=True)
    rows.append(dict(n=n, floor_s=floor_s, **{m: r for m, r in res.items()}))

  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(
      dict(
        jax=jax.__version__,
        cpu_count=os.cpu_count(),
        matmul_gflops=gflops,
        d=args.d,
        tile=args.tile,
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        rows=rows,
      ),
      f,
      indent=1,
    )
  print(f"# wrote {args.out}")


if __name__ == "__main__":
  main()
