"""Every method's CPU preset on CIFAR-10 under the same budget, side by side with published numbers.

  python benchmarks/compare_methods.py --steps=150 --out_dir=runs/methods_cpu

Each method runs `configs/<method>_cifar10.py:cpu` (the same tiny ResNet, batch, optimiser and
augmentation family) for the same number of steps through the normal entry point, in its own workdir
(re-running skips finished methods), then the kNN monitor (k=200) of its encoder on the full test
split against a bank of the first 10,000 training images. Writes a Markdown table and JSON.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("simclr", "moco_v2", "moco_v3", "byol", "simsiam", "supcon", "triplet")
# Published linear top-1 on CIFAR-10, ResNet-18, 1000 epochs: solo-learn's benchmark table
# (github.com/vturrisi/solo-learn, README "CIFAR-10", online linear Acc@1). Triplet: not listed.
PUBLISHED = {
  "simclr": 90.74,
  "moco_v2": 92.94,
  "moco_v3": 93.10,
  "byol": 92.58,
  "simsiam": 90.51,
  "supcon": 93.82,
  "triplet": None,
}


def run_one(method, steps, out_dir, bank_split):
  workdir = os.path.join(out_dir, method)
  results = os.path.join(workdir, "results.json")
  if os.path.exists(results):
    return json.load(open(results))
  cmd = [
    sys.executable,
    "-m",
    "contrastive_jax.main",
    f"--config=configs/{method}_cifar10.py:cpu",
    f"--workdir={workdir}",
    f"--config.total_steps={steps}",
    "--config.eval_at_start=False",
    f"--config.knn.bank_split={bank_split}",
  ]
  t0 = time.time()
  subprocess.run(cmd, cwd=REPO, check=True)
  res = json.load(open(results))
  res["wall_time_s"] = time.time() - t0
  with open(results, "w") as f:
    json.dump(res, f, indent=2)
  return res


def main():
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--steps", type=int, default=150)
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--bank_split", default="train[:10000]")
  p.add_argument("--out_dir", default=os.path.join(REPO, "runs", "methods_cpu"))
  a = p.parse_args()
  rows = []
  for m in a.methods.split(","):
    res = run_one(m, a.steps, a.out_dir, a.bank_split)
    rows.append(
      {
        "method": m,
        "knn_top1": res.get("knn_top1"),
        "steps": res.get("steps"),
        "train_time_s": res.get("train_time_s"),
        "wall_time_s": res.get("wall_time_s"),
        "published_linear_top1": PUBLISHED.get(m),
      }
    )
  lines = [
    "| method | kNN top-1 (this code, CPU budget) | steps | train time | published linear top-1 "
    "(ResNet-18, 1000 ep, solo-learn) |",
    "|---|---|---|---|---|",
  ]
  for r in rows:
    pub = f"{r['published_linear_top1']:.2f}%" if r["published_linear_top1"] else "n/a"
    lines.append(
      f"| {r['method']} | {100 * r['knn_top1']:.2f}% | {r['steps']} | "
      f"{r['train_time_s'] / 60:.1f} min | {pub} |"
    )
  table = "\n".join(lines)
  print(table)
  os.makedirs(a.out_dir, exist_ok=True)
  with open(os.path.join(a.out_dir, "table.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(a.out_dir, "table.json"), "w") as f:
    json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
