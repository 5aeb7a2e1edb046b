"""The one builder of augmentation-view configs (`config.aug`, `config.aug2`, evaluation views).

A view config is read by `data.augment.simclr_view`: random resized crop -> flip -> colour jitter
(strength s, p) -> grayscale (p) -> Gaussian blur (p, sigma range) -> solarize (p). `view()` with no
overrides is SimCLR's CIFAR view (Chen et al. 2020, appendix A: strength 0.5, no blur); a recipe
names only what it changes, e.g. `view(224, color_strength=1.0, blur_prob=0.5)` for ImageNet.
"""

import ml_collections

# Every field of a view and its default, in pipeline order.
_DEFAULTS = dict(
  image_size=32,
  crop_area_min=0.08,  # random resized crop: area fraction range ...
  crop_area_max=1.0,
  # ... covering at least this fraction of the image: SimCLR's min_object_covered=0.1
  # (tf2/data_util.py crop_and_resize); 0.0 = torchvision's RandomResizedCrop (area_range only).
  crop_min_object_covered=0.1,
  aspect_min=3 / 4,  # ... and aspect-ratio range (Inception-style crop)
  aspect_max=4 / 3,
  flip=True,
  color_strength=0.5,  # SimCLR's s: brightness/contrast/saturation 0.8 s, hue 0.2 s
  color_prob=0.8,
  gray_prob=0.2,
  blur_prob=0.0,
  blur_sigma_min=0.1,
  blur_sigma_max=2.0,
  solarize_prob=0.0,  # BYOL's second view: 0.2
)
# Read by simclr_view when present (default "bicubic"); not in the default dict, so configs written
# before it existed keep exactly their fields.
_OPTIONAL = dict(resize_method=str)
# In every view, None by default: the colour jitter's saturation range, None = 0.8 x color_strength
# (SimCLR); BYOL, MoCo v3 and solo-learn's asymmetric views use 0.2 beside strength 0.5.
_NULLABLE = dict(color_saturation=float)
_PROBS = ("color_prob", "gray_prob", "blur_prob", "solarize_prob")


def view(image_size: int = 32, **overrides) -> ml_collections.ConfigDict:
  """One augmented view's config: the defaults above with `overrides` applied.

  Args:
    image_size: output side in pixels (the crop is resized to image_size x image_size).
    **overrides: any field of the view (crop_area_min, color_strength, blur_prob, solarize_prob, ...)
      or resize_method.

  Returns:
    A ConfigDict for `data.augment.simclr_view`.

  Raises:
    ValueError: an unknown field, a probability outside [0, 1] or a bad crop range.
  """
  unknown = sorted(set(overrides) - set(_DEFAULTS) - set(_OPTIONAL) - set(_NULLABLE))
  if unknown:
    raise ValueError(
      f"augment.view got unknown field(s) {unknown}; the fields of a view are "
      f"{sorted(_DEFAULTS) + sorted(_OPTIONAL) + sorted(_NULLABLE)}."
    )
  fields = dict(_DEFAULTS, image_size=image_size)
  nullable = {k: overrides.pop(k) for k in list(overrides) if k in _NULLABLE}
  for name, value in overrides.items():
    # Keep each field's type (a float field stays float when given 0), so later typed overrides
    # (--config.aug.blur_prob=0.5) keep working.
    kind = _OPTIONAL.get(name) or type(_DEFAULTS[name])
    fields[name] = kind(value)
  fields["image_size"] = int(fields["image_size"])
  _check(fields)
  for name, kind in _NULLABLE.items():
    value = nullable.get(name)
    if value is not None and kind(value) < 0:
      raise ValueError(f"augment.view {name}={value}: a jitter range, use a value >= 0 (or None).")
    # A typed reference, so that a locked config still takes --config.aug.color_saturation=0.2.
    fields[name] = ml_collections.FieldReference(
      None if value is None else kind(value), field_type=kind
    )
  return ml_collections.ConfigDict(fields)


def crop_flip(image_size: int, crop_area_min: float = 0.08) -> ml_collections.ConfigDict:
  """The supervised view of fine-tuning and augmented linear evaluation: crop + flip only.

  SimCLR's linear evaluation and fine-tuning (appendix B.5) use random resized crops and horizontal
  flips, with no colour jitter, grayscale, blur or solarisation.

  Args:
    image_size: output side in pixels.
    crop_area_min: smallest crop, as a fraction of the image area.

  Returns:
    A ConfigDict for `data.augment.simclr_view`.
  """
  return view(
    image_size,
    crop_area_min=crop_area_min,
    color_strength=0.0,
    color_prob=0.0,
    gray_prob=0.0,
    blur_prob=0.0,
    solarize_prob=0.0,
  )


def _check(f: dict) -> None:
  if f["image_size"] <= 0:
    raise ValueError(f"augment.view image_size={f['image_size']}: use a positive pixel count.")
  for name in _PROBS:
    if not 0.0 <= f[name] <= 1.0:
      raise ValueError(f"augment.view {name}={f[name]}: a probability, use a value in [0, 1].")
  if not 0.0 < f["crop_area_min"] <= f["crop_area_max"] <= 1.0:
    raise ValueError(
      f"augment.view crop_area_min={f['crop_area_min']}, crop_area_max={f['crop_area_max']}: "
      "use 0 < crop_area_min <= crop_area_max <= 1."
    )
  if not 0.0 <= f["crop_min_object_covered"] <= 1.0:
    raise ValueError(
      f"augment.view crop_min_object_covered={f['crop_min_object_covered']}: a fraction of the "
      "image, use a value in [0, 1] (SimCLR's 0.1; 0.0 for torchvision's crop)."
    )
  if not 0.0 < f["aspect_min"] <= f["aspect_max"]:
    raise ValueError(
      f"augment.view aspect_min={f['aspect_min']}, aspect_max={f['aspect_max']}: "
      "use 0 < aspect_min <= aspect_max."
    )
  if not 0.0 < f["blur_sigma_min"] <= f["blur_sigma_max"]:
    raise ValueError(
      f"augment.view blur_sigma_min={f['blur_sigma_min']}, blur_sigma_max={f['blur_sigma_max']}: "
      "use 0 < blur_sigma_min <= blur_sigma_max."
    )
