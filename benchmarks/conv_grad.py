"""Where XLA:CPU's train step loses to PyTorch: one 3x3 convolution's forward + backward, three ways.

  python benchmarks/conv_grad.py                     # resnet_tiny's four stage shapes, batch 512
  python benchmarks/conv_grad.py --batch 128 --out /tmp/conv.json

For each stage of resnet_tiny (a SimCLR batch of 256 pairs = 512 images; 32x32x16, 16x16x32, 8x8x64,
4x4x128) it times the jitted gradient of sum(conv(x, w) * g) with respect to x and w:
  native  XLA's own convolution gradients (what the train step uses);
  mm_dw   the weight gradient as one im2col matmul, (9 C_in x B H W) @ (B H W x C_out), because the
          backward-filter convolution (a contraction over B H W into a tiny 3x3 x C x C output) is the
          shape Eigen's spatial convolution handles worst; the input gradient stays XLA's;
  mm_all  both gradients as matmuls (the input gradient as a matmul then col2im, a sum of 9 shifts).
The two rewrites are checked against the native gradients (the largest difference relative to the
largest entry, printed; tests/test_conv_grad_bench.py holds them to 1e-5 on small inputs).

It runs with the trainer's XLA:CPU convolution setting (contrastive_jax/cpu_convolutions.py: weight
gradients off YNNPACK). jaxlib's own default, for the before/after of README "Train step":
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_convolution python benchmarks/conv_grad.py
Importable without TensorFlow.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from contrastive_jax import cpu_convolutions  # noqa: E402

cpu_convolutions.configure()  # before jax starts; an XLA_FLAGS naming the option wins

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

DN = ("NHWC", "HWIO", "NHWC")
SHAPES = ((32, 16), (16, 32), (8, 64), (4, 128))  # resnet_tiny's stages: (side, channels)


def conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)


def patches(x):
  """(B, H, W, C) -> (B, H, W, 9C), taps in (dy, dx, c) order, matching an HWIO kernel's reshape."""
  _, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate([xp[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)], -1)


def col2im(cols, c):
  """The adjoint of `patches`: (B, H, W, 9C) -> (B, H, W, C)."""
  b, h, w, _ = cols.shape
  out = jnp.zeros((b, h + 2, w + 2, c), cols.dtype)
  for k in range(9):
    i, j = divmod(k, 3)
    out = out.at[:, i : i + h, j : j + w, :].add(cols[..., k * c : (k + 1) * c])
  return out[:, 1:-1, 1:-1, :]


def _fwd(x, w):
  return conv(x, w), (x, w)


def _dw_matmul(x, g, cin, cout):
  return (patches(x).reshape(-1, 9 * cin).T @ g.reshape(-1, cout)).reshape(3, 3, cin, cout)


@jax.custom_vjp
def conv_mm_dw(x, w):
  return conv(x, w)


def _bwd_mm_dw(res, g):
  x, w = res
  dx = jax.lax.conv_transpose(g, w, (1, 1), "SAME", dimension_numbers=DN, transpose_kernel=True)
  return dx, _dw_matmul(x, g, w.shape[2], w.shape[3])


conv_mm_dw.defvjp(_fwd, _bwd_mm_dw)


@jax.custom_vjp
def conv_mm_all(x, w):
  return conv(x, w)


def _bwd_mm_all(res, g):
  x, w = res
  cin, cout = w.shape[2], w.shape[3]
  dcols = g.reshape(-1, cout) @ w.reshape(9 * cin, cout).T
  return col2im(dcols.reshape(x.shape[:3] + (9 * cin,)), cin), _dw_matmul(x, g, cin, cout)


conv_mm_all.defvjp(_fwd, _bwd_mm_all)

VARIANTS = {"native": conv, "mm_dw": conv_mm_dw, "mm_all": conv_mm_all}


def _median_s(f, *args, n):
  jax.block_until_ready(f(*args))  # compile
  times = []
  for _ in range(n):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def bench(batch: int, side: int, channels: int, repeats: int) -> dict:
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, side, side, channels)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, channels, channels)) / np.sqrt(9 * channels), jnp.float32)
  g = jnp.asarray(rng.normal(size=(batch, side, side, channels)), jnp.float32)
  row = dict(batch=batch, side=side, channels=channels)
  grads = {}
  for name, fn in VARIANTS.items():
    f = jax.jit(jax.grad(lambda x, w, fn=fn: jnp.sum(fn(x, w) * g), argnums=(0, 1)))
    row[f"{name}_ms"] = 1e3 * _median_s(f, x, w, n=repeats)
    grads[name] = f(x, w)
  ref_dx, ref_dw = grads["native"]

  def rel(a, ref):  # max abs difference relative to the largest reference entry
    return float(jnp.max(jnp.abs(a - ref)) / jnp.max(jnp.abs(ref)))

  for name in ("mm_dw", "mm_all"):
    row[f"{name}_rel_diff_dw"] = rel(grads[name][1], ref_dw)
  row["mm_all_rel_diff_dx"] = rel(grads["mm_all"][0], ref_dx)
  return row


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=512)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument(
    "--out", default=os.path.join(os.path.dirname(__file__), "results", "conv_grad.json")
  )
  a = p.parse_args()
  load_before = os.getloadavg()[0]  # > 0.5: not a quiet machine, the times are noise
  rows = [bench(a.batch, s, c, a.repeats) for s, c in SHAPES]
  xla_flags = os.environ.get("XLA_FLAGS", "")
  print(f"# load average before {load_before:.2f}, jax {jax.__version__}, {os.cpu_count()} CPUs")
  print(f"# XLA_FLAGS={xla_flags!r}")
  print(
    f"{'shape (B,H,W,C)':<20} {'native ms':>10} {'mm_dw ms':>9} {'mm_all ms':>10} {'rel diff':>9}"
  )
  for r in rows:
    shape = f"{r['batch']},{r['side']},{r['side']},{r['channels']}"
    print(
      f"{shape:<20} {r['native_ms']:>10.1f} {r['mm_dw_ms']:>9.1f} {r['mm_all_ms']:>10.1f} "
      f"{max(r['mm_dw_rel_diff_dw'], r['mm_all_rel_diff_dw'], r['mm_all_rel_diff_dx']):>9.1e}"
    )
  for r in rows:
    r.update(
      load_average_1m_before=load_before,
      cpus=os.cpu_count(),
      jax=jax.__version__,
      xla_flags=xla_flags,
    )
  os.makedirs(os.path.dirname(a.out), exist_ok=True)
  with open(a.out, "w", encoding="utf-8") as f:
    json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
