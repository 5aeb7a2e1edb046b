"""benchmarks/conv_grad.py: its im2col-matmul gradients are the convolution's gradients."""

from benchmarks import conv_grad


def test_matmul_gradients_equal_xla_convolution_gradients():
  row = conv_grad.bench(batch=3, side=6, channels=5, repeats=1)
  for key in ("mm_dw_rel_diff_dw", "mm_all_rel_diff_dw", "mm_all_rel_diff_dx"):
    assert row[key] < 1e-5, (key, row[key])
  assert all(row[f"{name}_ms"] > 0 for name in conv_grad.VARIANTS)
