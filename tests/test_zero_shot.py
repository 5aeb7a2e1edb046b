"""Zero-shot classification and image-text retrieval: hand-computed values, and the whole evaluator
(prompts, tokenizer, class embeddings, sharded embedding, data) on data where the answer is known."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from contrastive_jax.data import tokenizer
from contrastive_jax.evaluators import zero_shot as zs
from contrastive_jax.methods import base
from contrastive_jax.protocols import image_text
from tests import clip_helpers


def test_class_embeddings_mean_of_normalised_templates():
  # Class 0's templates (3, 0) and (0, 1) -> mean of units (0.5, 0.5) -> (1, 1)/sqrt(2);
  # class 1's (0, -2) and (0, -5) -> (0, -1): lengths do not weigh the mean.
  e = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, -2.0], [0.0, -5.0]])
  got = zs.class_embeddings(e, num_classes=2, num_templates=2)
  np.testing.assert_allclose(got, [[2**-0.5, 2**-0.5], [0.0, -1.0]], atol=1e-6)
  with pytest.raises(ValueError, match="2 classes x 3 templates"):
    zs.class_embeddings(e, num_classes=2, num_templates=3)


def test_classify_top1_top5_by_hand():
  classes = np.eye(6, dtype=np.float32)
  images = np.array(
    [
      [1.0, 0.5, 0, 0, 0, 0],  # class 0 first: top-1 hit
      [0.2, 0.9, 0.8, 0.7, 0.6, 0.5],  # label 0 ranks 6th: miss for top-1 and top-5
      [0.1, 0.9, 0.8, 0.7, 0.6, 0.5],  # label 4 ranks 4th: top-5 hit only
    ],
    np.float32,
  )
  got = zs.classify(images, np.array([0, 0, 4]), classes)
  assert got == {"zero_shot_top1": pytest.approx(1 / 3), "zero_shot_top5": pytest.approx(2 / 3)}
  # With 4 classes top-5 is trivially 1 and is not reported.
  assert set(zs.classify(images[:, :4], np.array([0, 1, 2]), np.eye(4))) == {"zero_shot_top1"}


def test_image_text_recall_by_hand():
  # Image i's similarities to the texts (rows, after normalising): image 0 ranks text 0 first;
  # image 1 ranks text 2, then 1; image 2 ranks 0, 1, then 2.
  img = np.array([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8], [0.8, 0.5, 0.1]], np.float32)
  txt = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
  got = zs.image_text_retrieval(img, txt, np.array([0, 1, 2]), ks=(1, 2))
  assert got["i2t_recall@1"] == pytest.approx(1 / 3)  # image 0 only
  assert got["i2t_recall@2"] == pytest.approx(2 / 3)  # + image 1; image 2's text is 3rd
  # Texts: text 0 -> image 0 (1.0 > 0.84); text 1 -> image 1 (0.6 > 0.53); text 2 -> image 1
  # (0.8), then image 2 (0.1).
  assert got["t2i_recall@1"] == pytest.approx(2 / 3)
  assert got["t2i_recall@2"] == pytest.approx(1.0)


def test_repeated_captions_count_by_id_and_fill_no_slots():
  # Images 0 and 1 share a caption text (id 7). Image 1's nearest text is row 0, equal to its own.
  img = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], np.float32)
  txt = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
  got = zs.image_text_retrieval(img, txt, np.array([7, 7, 3]), ks=(1,))
  assert got["i2t_recall@1"] == 1.0 and got["t2i_recall@1"] == 1.0
  # The gallery of i2t holds each distinct caption once: 2 distinct texts, so R@2 is a full hit.
  wrong = zs.image_text_retrieval(img, txt[::-1], np.array([7, 7, 3]), ks=(1, 2))
  assert wrong["i2t_recall@1"] == 0.0 and wrong["i2t_recall@2"] == 1.0


# ----------------------------------------------------------------------------- a known answer

COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


def _write_png(path, rgb, size=16):
  image = np.full((size, size, 3), np.asarray(rgb) * 255, np.uint8)
  tf.io.write_file(str(path), tf.io.encode_png(image))


def _oracle(swap: bool) -> base.Method:
  """joint_image = the mean colour; joint_text = the colour its words name (swap: a lying one)."""
  tok = tokenizer.get_tokenizer()
  table = np.zeros((tokenizer.VOCAB_SIZE, 3), np.float32)
  names = list(COLOURS)
  for i, name in enumerate(names):
    (token,) = tok.encode(name)
    table[token] = COLOURS[names[(i + 1) % 3] if swap else name]
  table = jnp.asarray(table)

  def joint_image(state, images):
    del state
    return images.mean(axis=(1, 2))

  def joint_text(state, tokens):
    del state
    return table[tokens].sum(axis=1) + 1e-3  # the template's words add nothing

  return base.Method(
    name="oracle",
    init=None,
    loss_fn=None,
    embed=None,
    joint_image=joint_image,
    joint_text=joint_text,
  )


@pytest.mark.parametrize("swap", [False, True])
def test_evaluator_on_a_known_answer(tmp_path, swap):
  # Zero-shot: a class-per-directory folder of solid colours; retrieval: a folder of solid-colour
  # images, each with its caption file beside it.
  classes, pairs = tmp_path / "classes", tmp_path / "pairs"
  for name, rgb in COLOURS.items():
    (classes / "test" / name).mkdir(parents=True)
    for k in range(3):
      _write_png(classes / "test" / name / f"{k}.png", rgb)
    (classes / "train" / name).mkdir(parents=True)
    _write_png(classes / "train" / name / "0.png", rgb)
    pairs.mkdir(exist_ok=True)
    _write_png(pairs / f"{name}.png", rgb)
    (pairs / f"{name}.txt").write_text(f"a {name} square\nanother line: not the first caption\n")
  config = clip_helpers.tiny_config("clip")
  config.dataset, config.text.source = str(pairs), "folder"
  config.text.templates = "cifar10"
  config.zero_shot.update(
    dataset=f"folder:{classes}", split="test", retrieval_split="train", recall_ks=(1, 2)
  )
  mesh = jax.make_mesh((8,), (base.AXIS,))
  data = types.SimpleNamespace(process_index=0, process_count=1)
  got = image_text.evaluate(_oracle(swap), {}, config, mesh, data)
  want = 0.0 if swap else 1.0
  assert got["zero_shot_top1"] == want  # 9 images, 3 classes x 18 CIFAR templates
  assert got["i2t_recall@1"] == want and got["t2i_recall@1"] == want
  assert "zero_shot_top5" not in got  # 3 classes
