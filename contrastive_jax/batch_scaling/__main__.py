"""Collects a batch-size sweep into a table and a figure (see collect.py).

  python -m contrastive_jax.batch_scaling --sweep_dir=runs/sweep_cpu --out=docs/batch_scaling

The command-line flags live here, so importing the library modules defines none.
"""

from absl import app, flags

from contrastive_jax.batch_scaling import collect

_SWEEP_DIR = flags.DEFINE_string(
  "sweep_dir", None, "The sweep's workdir W (holds W/<run>/results.json)."
)
_OUT = flags.DEFINE_string(
  "out", None, "Output prefix (default W/batch_scaling): writes .md, .csv, .png."
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]} (only --sweep_dir and --out).")
  if not _SWEEP_DIR.value:
    raise app.UsageError("--sweep_dir is required (the sweep's workdir W).")
  res = collect.collect(_SWEEP_DIR.value, _OUT.value)
  with open(res["md"], encoding="utf-8") as f:
    print(f.read())
  print(f"Wrote {res['md']}, {res['csv']}, {res['png']}.")


if __name__ == "__main__":
  app.run(main)
