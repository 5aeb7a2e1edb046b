"""CLIP BPE tokenizer == the reference (open_clip) on a fixture of varied strings; asset checks."""

import json
import os
import shutil

import numpy as np
import pytest

from contrastive_jax.data import tokenizer

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "clip_tokens.json")


def _fixture():
  with open(FIXTURE, encoding="utf-8") as f:
    return json.load(f)


@pytest.mark.parametrize("section", ["full", "short"])
def test_ids_equal_reference(section):
  data = _fixture()
  if section == "short":
    data = data["short_context"]
  tok = tokenizer.get_tokenizer("clip_bpe")
  texts = [c["text"] for c in data["cases"]]
  want = np.asarray([c["ids"] for c in data["cases"]], np.int32)
  got = tok(texts, data["context_length"])
  assert got.dtype == np.int32 and got.shape == want.shape
  for text, g, w in zip(texts, got, want):
    np.testing.assert_array_equal(g, w, err_msg=repr(text))


def test_structure_and_truncation():
  tok = tokenizer.get_tokenizer()
  assert tok.vocab_size == tokenizer.VOCAB_SIZE == 49408
  long = tok(["word " * 100], 16)[0]
  assert long[0] == tokenizer.SOT and long[-1] == tokenizer.EOT and np.all(long > 0)
  short = tok(["a cat"], 16)[0]
  # EOT is the largest id, so argmax finds the pooling position (what models/text.py relies on).
  assert int(np.argmax(short)) == 3 and np.all(short[4:] == 0)
  assert tok.decode(short) == "a cat"


def test_corrupt_asset_is_refused(tmp_path, monkeypatch):
  bad = tmp_path / "bpe.txt.gz"
  shutil.copy(tokenizer.ASSET, bad)
  with open(bad, "r+b") as f:
    f.seek(1000)
    f.write(b"\0\0\0\0")
  monkeypatch.setattr(tokenizer, "ASSET", str(bad))
  with pytest.raises(ValueError, match="corrupt"):
    tokenizer.ClipTokenizer(str(bad))


def test_unknown_tokenizer_names_the_field():
  with pytest.raises(ValueError, match="config.text.tokenizer"):
    tokenizer.get_tokenizer("sentencepiece")
