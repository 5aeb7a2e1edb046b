"""CLIP's byte-level BPE tokenizer (Radford et al. 2021), offline, without torch or open_clip.

The merges file `assets/bpe_simple_vocab_16e6.txt.gz` ships with this package (MIT, see
assets/LICENSE); its size and sha256 are checked when it is loaded, so a truncated or replaced file
fails loudly instead of silently changing every token id. The algorithm follows openai/CLIP's
`simple_tokenizer.py` (as copied into open_clip): ftfy + HTML unescape + whitespace collapse +
lower case, the CLIP regular expression, bytes -> unicode, greedy merges by rank. Token ids equal the
reference's (tests/test_tokenizer.py checks a fixture produced once by open_clip).

Output rows are `[<start_of_text>, ..., <end_of_text>, 0, 0, ...]` of length `context_length`; a
text that does not fit is truncated and its last kept token replaced by <end_of_text> (as
open_clip's `tokenize`), so the end-of-text token, the largest id, always marks where the text tower
pools.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import html
import os

import ftfy
import numpy as np
import regex

ASSET = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), "assets", "bpe_simple_vocab_16e6.txt.gz"
)
ASSET_BYTES = 1_356_917
ASSET_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
VOCAB_SIZE = 49_408
SOT, EOT = 49_406, 49_407
TOKENIZERS = ("clip_bpe",)

# The reference keeps merges [1, 49152 - 256 - 2 + 1): 48,894 merges + 2 x 256 byte symbols + 2
# special tokens = 49,408 ids.
_NUM_MERGES = 49152 - 256 - 2
_PATTERN = regex.compile(
  r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
  regex.IGNORECASE,
)


def bytes_to_unicode() -> dict[int, str]:
  """Reversible map from the 256 byte values to printable unicode characters (GPT-2's table)."""
  bs = (
    list(range(ord("!"), ord("~") + 1))
    + list(range(ord("¡"), ord("¬") + 1))
    + list(range(ord("®"), ord("ÿ") + 1))
  )
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  return dict(zip(bs, map(chr, cs)))


def clean(text: str) -> str:
  """The reference's 'lower' cleaning: ftfy, HTML unescape (twice), collapse whitespace, lower."""
  text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
  return " ".join(text.split()).strip().lower()


def _read_merges(path: str) -> list[tuple[str, str]]:
  with open(path, "rb") as f:
    raw = f.read()
  digest = hashlib.sha256(raw).hexdigest()
  if path == ASSET and (len(raw) != ASSET_BYTES or digest != ASSET_SHA256):
    raise ValueError(
      f"The CLIP BPE merges file {path} is corrupt ({len(raw)} bytes, sha256 {digest}; expected "
      f"{ASSET_BYTES} bytes, sha256 {ASSET_SHA256}). Restore it from git (`git checkout -- {path}`) "
      f"or from the open-clip-torch wheel (open_clip/bpe_simple_vocab_16e6.txt.gz)."
    )
  lines = gzip.decompress(raw).decode("utf-8").split("\n")[1 : _NUM_MERGES + 1]
  return [tuple(line.split()) for line in lines]


class ClipTokenizer:
  """Text -> int32 token ids of CLIP's 49,408-token vocabulary."""

  def __init__(self, path: str = ASSET):
    self.byte_encoder = bytes_to_unicode()
    self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
    merges = _read_merges(path)
    vocab = list(self.byte_encoder.values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<start_of_text>", "<end_of_text>"]
    self.encoder = {tok: i for i, tok in enumerate(vocab)}
    self.decoder = {i: tok for tok, i in self.encoder.items()}
    self.ranks = {m: i for i, m in enumerate(merges)}
    self.vocab_size = len(vocab)
    self.sot, self.eot = self.encoder["<start_of_text>"], self.encoder["<end_of_text>"]
    assert (self.vocab_size, self.sot, self.eot) == (VOCAB_SIZE, SOT, EOT), "unexpected vocab"
    # Special tokens written in the text map to themselves, as in the reference.
    self._cache = {"<start_of_text>": "<start_of_text>", "<end_of_text>": "<end_of_text>"}

  def _bpe(self, token: str) -> str:
    """Space-separated BPE symbols of one pre-token (merges applied lowest rank first)."""
    if token in self._cache:
      return self._cache[token]
    word = tuple(token[:-1]) + (token[-1] + "</w>",)
    while len(word) > 1:
      pairs = set(zip(word[:-1], word[1:]))
      best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
      if best not in self.ranks:
        break
      merged, i = [], 0
      while i < len(word):
        if i < len(word) - 1 and word[i] == best[0] and word[i + 1] == best[1]:
          merged.append(word[i] + word[i + 1])
          i += 2
        else:
          merged.append(word[i])
          i += 1
      word = tuple(merged)
    out = " ".join(word)
    self._cache[token] = out
    return out

  def encode(self, text: str) -> list[int]:
    """BPE ids of `text` without start/end tokens."""
    ids = []
    for token in _PATTERN.findall(clean(text)):
      token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
      ids.extend(self.encoder[t] for t in self._bpe(token).split(" "))
    return ids

  def decode(self, ids) -> str:
    text = "".join(self.decoder[int(i)] for i in ids if int(i) not in (0, self.sot, self.eot))
    data = bytearray(self.byte_decoder[c] for c in text)
    return data.decode("utf-8", errors="replace").replace("</w>", " ").strip()

  def __call__(self, texts, context_length: int) -> np.ndarray:
    """(len(texts), context_length) int32: SOT, ids, EOT, zero padding (truncated to fit)."""
    if isinstance(texts, str):
      texts = [texts]
    if context_length < 2:
      raise ValueError(f"context_length={context_length} must be >= 2 (start and end tokens).")
    out = np.zeros((len(texts), context_length), np.int32)
    for row, text in enumerate(texts):
      ids = [self.sot, *self.encode(text), self.eot]
      if len(ids) > context_length:
        ids = ids[:context_length]
        ids[-1] = self.eot
      out[row, : len(ids)] = ids
    return out


@functools.lru_cache(maxsize=2)
def get_tokenizer(name: str = "clip_bpe") -> ClipTokenizer:
  """The tokenizer by name (config.text.tokenizer); loaded once per process."""
  if name not in TOKENIZERS:
    raise ValueError(
      f"config.text.tokenizer={name!r} is not a tokenizer here; use one of {TOKENIZERS}."
    )
  return ClipTokenizer()
