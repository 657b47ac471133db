"""AutoAugment's ImageNet policy as EfficientNet trained with it, on Pillow images.

POLICY_V0 and the level -> argument rules are those of TF EfficientNet's autoaugment.py
(`policy_v0`, `level_to_arg`, _MAX_LEVEL = 10, gray fill 128): one of the 25 sub-policies
is drawn uniformly per image and each of its two ops runs with its own probability.
Kept quirks of that reference, so results are comparable with the published numbers:
- Posterize keeps int(level / 10 * 4) bits, i.e. 0-4 (level 2 -> 0 bits: a black image);
  the paper's table says 4-8 bits.
- Solarize at level 10 has threshold 256, so it changes nothing.
One deliberate change: TF translates by level / 10 * 250 pixels at every image size; here
the 250 is scaled by image_size / 224, so B0 (224) matches TF exactly and small images
are not translated clean out of the frame.
"""
from PIL import Image, ImageEnhance, ImageOps

MAX_LEVEL = 10.0
FILL = (128, 128, 128)
TRANSLATE_PIXELS_AT_224 = 250.0

# (op, probability, level); each row is one sub-policy.
POLICY_V0 = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)


def _signed(value, rng):
    # TF negates rotation, shear and translation magnitudes with probability 1/2.
    return -value if rng.random() < 0.5 else value


def _affine(img, coefficients):
    # Pillow's AFFINE maps each output pixel back to the input, as TF's transform does.
    return img.transform(img.size, Image.Transform.AFFINE, coefficients,
                         resample=Image.Resampling.NEAREST, fillcolor=FILL)


def _solarize_add(img, addition, threshold=128):
    table = [min(255, v + addition) if v < threshold else v for v in range(256)]
    return img.point(table * 3)


def _posterize(img, bits):
    # ImageOps.posterize refuses bits=0, which TF's policy asks for (level 2 -> 0 bits).
    mask = (0xFF << (8 - bits)) & 0xFF
    return img.point([v & mask for v in range(256)] * 3)


def _apply(img, name, level, rng):
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Posterize":
        return _posterize(img, int(level / MAX_LEVEL * 4))
    if name == "Solarize":
        return ImageOps.solarize(img, int(level / MAX_LEVEL * 256))
    if name == "SolarizeAdd":
        return _solarize_add(img, int(level / MAX_LEVEL * 110))
    if name == "Color":
        return ImageEnhance.Color(img).enhance(level / MAX_LEVEL * 1.8 + 0.1)
    if name == "Rotate":
        return img.rotate(_signed(level / MAX_LEVEL * 30.0, rng), resample=Image.Resampling.NEAREST,
                          fillcolor=FILL)
    if name == "ShearX":
        return _affine(img, (1, _signed(level / MAX_LEVEL * 0.3, rng), 0, 0, 1, 0))
    if name == "ShearY":
        return _affine(img, (1, 0, 0, _signed(level / MAX_LEVEL * 0.3, rng), 1, 0))
    if name == "TranslateY":
        pixels = level / MAX_LEVEL * TRANSLATE_PIXELS_AT_224 * img.height / 224
        return _affine(img, (1, 0, 0, 0, 1, _signed(pixels, rng)))
    raise ValueError(f"unknown AutoAugment op {name!r}")


def apply_autoaugment(img, rng, policy=POLICY_V0):
    """One randomly chosen sub-policy of `policy` applied to the RGB image `img`."""
    for name, probability, level in policy[rng.randrange(len(policy))]:
        if rng.random() < probability:
            img = _apply(img, name, level, rng)
    return img
