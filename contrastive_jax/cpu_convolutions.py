"""XLA:CPU convolutions: keep the backward-filter convolution off YNNPACK (set before jax starts).

jaxlib 0.10.2 and 0.12 hand every plain 2-D convolution to YNNPACK by default, including the one
jax's autodiff emits for a weight gradient, which XLA canonicalises into a convolution of the
(C_in, H, W, N) activations with the (H, W, N, C_out) output gradient as a "kernel": a 3x3 output
and a 32x32 window, the shape YNNPACK's convolution is slowest at. On the project's 2-core CPU
(benchmarks/conv_grad.py, one 3x3 convolution's weight gradient at batch 512), 2026-12-03 host:
32x32x16 1,040 ms with YNNPACK against 98 ms with XLA's own (Eigen) convolution; 16x16x32 315 vs
63 ms; jaxlib 0.12.0.1: 408 vs 86 ms. 2026-12-04 host (AMD EPYC, AVX-512), forward + both
gradients: 137 vs 77 ms, 194 vs 41, 67 vs 39, 40 vs 25. In the resnet_tiny SimCLR step this
flag together with models/cpu_fusion.py (which makes those convolutions read plain buffers) is
340 images/s against 265 with the fusion fix alone and 210 with neither (README "Performance").
Forward and input-gradient convolutions were not slower without YNNPACK, so the flag removes
convolutions from YNNPACK's list altogether (its dots and elementwise fusions keep their defaults).

An XLA_FLAGS that already names the option wins. The flag is only added for jaxlib versions where
it was checked to exist (XLA aborts the process on an unknown flag in XLA_FLAGS).
"""

import os
import re
from importlib import metadata

OPTION = "--xla_cpu_experimental_ynn_fusion_type"
FLAG = f"{OPTION}=-individual_convolution"
# jaxlib versions whose XLA knows the option and whose default puts convolutions on YNNPACK:
# checked on 0.10.2 (the locks) and 0.12.0.1, [low, high).
VERIFIED = ((0, 10, 2), (0, 13, 0))


def _version(text: str) -> tuple[int, int, int]:
  m = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
  return tuple(int(g) for g in m.groups()) if m else (0, 0, 0)


def applies(jaxlib_version: str | None) -> bool:
  if jaxlib_version is None:
    return False
  return VERIFIED[0] <= _version(jaxlib_version) < VERIFIED[1]


def configure(environ=None) -> bool:
  """Adds FLAG to XLA_FLAGS unless XLA_FLAGS names the option or jaxlib is not a verified version.

  Returns whether it added it. Must run before jax creates its CPU backend; on GPU and TPU it only
  changes how CPU-side programs (if any) compile.
  """
  environ = os.environ if environ is None else environ
  flags = environ.get("XLA_FLAGS", "")
  if OPTION in flags:
    return False
  try:
    version = metadata.version("jaxlib")
  except metadata.PackageNotFoundError:
    version = None
  if not applies(version):
    return False
  environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
  return True
