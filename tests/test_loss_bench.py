"""benchmarks/loss.py: a worker's row (tiled and dense agree on the loss; the blocks-only time)."""

import math

from benchmarks import loss as loss_bench


def test_worker_rows_agree_and_time_the_tiled_blocks():
  dense = loss_bench.worker(n=48, d=8, mode="dense", tile=32, temperature=0.1)
  tiled = loss_bench.worker(n=48, d=8, mode="tiled", tile=32, temperature=0.1)
  assert math.isclose(tiled["loss"], dense["loss"], rel_tol=1e-5), (tiled, dense)
  assert tiled["tile"] == 32 and dense["tile"] is None
  assert tiled["blocks_matmul_s"] > 0 and "blocks_matmul_s" not in dense
  assert all(r["time_s"] > 0 and r["matmul_gflops"] > 0 for r in (dense, tiled))
