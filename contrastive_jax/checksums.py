"""Per-file checksums of a checkpoint directory (orbax stores none): written once a save is final,
verified before a restore, so a flipped bit or a bad copy is caught and an older checkpoint used.

`<step>/checksums.json` maps each file's path (relative to the step directory) to [size, SHA-256].
Paths are epath paths: local or gs://.
"""

import hashlib
import json
import os

from etils import epath

from contrastive_jax import workdir as workdir_lib

NAME = "checksums.json"


class Mismatch(Exception):
  """A listed file is missing or differs in size or SHA-256, or the listing is unreadable."""


def digest(f: epath.Path) -> tuple[int, str]:
  h, size = hashlib.sha256(), 0
  with f.open("rb") as fh:
    while chunk := fh.read(1 << 22):
      h.update(chunk)
      size += len(chunk)
  return size, h.hexdigest()


def files(root: epath.Path) -> list[str]:
  """Every file under root, relative to it (epath's walk drops the gs:// prefix, so compare
  without it)."""
  base = os.fspath(root).split("://", 1)[-1].rstrip("/")
  out = []
  for top, _, names in root.walk():
    rel = os.fspath(top).split("://", 1)[-1].rstrip("/")[len(base) :].strip("/")
    out += [f"{rel}/{n}" if rel else n for n in names]
  return sorted(out)


def write(root: epath.Path) -> None:
  sums = {rel: list(digest(root / rel)) for rel in files(root) if rel != NAME}
  workdir_lib.write_text(root / NAME, json.dumps(sums, indent=1, sort_keys=True))


def verify(root: epath.Path) -> bool:
  """Checks every listed file; False when root has no listing (written before checksums existed,
  or the run died between the save and its checksums).

  Raises:
    Mismatch: naming up to three bad files.
  """
  listing = root / NAME
  if not listing.exists():
    return False
  try:
    expected = json.loads(listing.read_text())
  except (ValueError, OSError) as e:
    raise Mismatch(f"{NAME} unreadable: {e}") from None
  bad = []
  for rel, (size, sha) in sorted(expected.items()):
    f = root / rel
    if not f.exists():
      bad.append(f"{rel} is missing")
      continue
    got = digest(f)
    if got != (size, sha):
      bad.append(f"{rel}: {got[0]} bytes, sha256 {got[1][:12]}... (saved: {size}, {sha[:12]}...)")
  if bad:
    raise Mismatch(f"{len(bad)} file(s) differ from their checksums: " + "; ".join(bad[:3]))
  return True
