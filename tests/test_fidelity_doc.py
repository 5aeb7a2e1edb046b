"""docs/fidelity.md states what the presets hold: every table row that names a config field gives
that preset's value, checked here against get_config(preset) (the page cannot drift)."""

import ast
import importlib
import os
import re

import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DOC = os.path.join(_REPO, "docs", "fidelity.md")
_PRESET = re.compile(r"^#+ `configs/(\w+)\.py:(\w+)`\s*$")


def _rows():
  """(config, preset, field, literal) of every table row whose Field cell is a `path`."""
  rows, where = [], None
  with open(_DOC, encoding="utf-8") as f:
    for line in f:
      m = _PRESET.match(line.strip())
      if m:
        where = m.groups()
        continue
      if line.startswith("## "):
        where = None  # a new method: rows need their preset header again
      cells = [c.strip() for c in line.strip().strip("|").split("|")]
      if where is None or len(cells) != 6:
        continue
      field, value = cells[3], cells[4]
      if re.fullmatch(r"`[\w.]+`", field) and re.fullmatch(r"`.+`", value):
        rows.append((*where, field.strip("`"), value.strip("`")))
  return rows


_ROWS = _rows()


def _get(config, path):
  for key in path.split("."):
    config = config[key]
  return config


def _norm(v):
  return tuple(_norm(x) for x in v) if isinstance(v, (list, tuple)) else v


def test_the_page_has_the_tables():
  presets = {(c, p) for c, p, *_ in _ROWS}
  for name in ("simclr", "moco_v2", "moco_v3", "byol", "simsiam", "supcon"):
    assert any(c.startswith(name) for c, _ in presets), name
  assert len(_ROWS) > 150


@pytest.mark.parametrize("config, preset, field, value", _ROWS)
def test_row_states_the_preset_value(config, preset, field, value):
  c = importlib.import_module(f"configs.{config}").get_config(preset)
  assert _norm(_get(c, field)) == _norm(ast.literal_eval(value)), (config, preset, field)


def test_readme_links_the_page():
  with open(os.path.join(_REPO, "README.md"), encoding="utf-8") as f:
    assert "docs/fidelity.md" in f.read()
