"""How a photo is cropped and resized for evaluation: `EvalView`, one per network.

Two libraries, two orders:

    mode "tf"            crop, then resize (TensorFlow's EfficientNet eval, tinyeffnet's own):
                         the center square of crop_pct of the short side (default
                         size / (size + 32), 224/256 at 224), bicubic resize to size x size
    mode "resize-crop"   resize, then crop (timm's crop_mode "center", torchvision's presets):
                         the short side resized to floor(size / crop_pct), the long side in
                         proportion, then the center size x size
    mode "squash-crop"   timm's crop_mode "squash": both sides resized to floor(size / crop_pct),
                         then the center size x size

The same pixels need the same arithmetic: "resize-crop" does exactly what torchvision's
Resize(int) and CenterCrop do to a Pillow image (the long side truncated, the crop offset
rounded half to even), on the image decoded at full size, so a photo gives timm's and
torchvision's uint8 pixels. "tf" keeps the crop-first path of data_tools/images.py
(JPEGs decoded at reduced scale where that keeps the crop above the output size).
A network records its view in its checkpoint (tinyeffnet.model.ModelSpec); networks
trained here use "tf".
"""
import math
from dataclasses import dataclass

from PIL import Image

from .errors import UnreadableImage
from .images import decode_crop

EVAL_CROP_PADDING = 32
MODES = ("tf", "resize-crop", "squash-crop")
INTERPOLATIONS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                  "bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
                  "hamming": Image.Resampling.HAMMING, "lanczos": Image.Resampling.LANCZOS}
_DESCRIBED = {"tf": "center crop of {fraction} of the short side, {interpolation} resize to {size}x{size}",
              "resize-crop": "short side {interpolation}-resized to {resize}, center crop {size}x{size}",
              "squash-crop": "both sides {interpolation}-resized to {resize}, center crop {size}x{size}"}


@dataclass(frozen=True)
class EvalView:
    """How a photo becomes a size x size eval image; checked when made."""
    mode: str = "tf"
    crop_pct: float = None          # the fraction of the (resized) short side kept; None with "tf": size / (size + 32)
    interpolation: str = "bicubic"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown eval view mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}: choose one of {', '.join(INTERPOLATIONS)}")
        if self.mode == "tf" and self.interpolation != "bicubic":
            raise ValueError("the tf eval view resizes bicubic (as TensorFlow's EfficientNet eval did)")
        if self.crop_pct is None:
            if self.mode != "tf":
                raise ValueError(f"the {self.mode} eval view needs a crop_pct (e.g. 0.875: 224 of 256)")
        elif isinstance(self.crop_pct, bool) or not isinstance(self.crop_pct, (int, float)) \
                or not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be a number in (0, 1], got {self.crop_pct!r}")
        else:
            object.__setattr__(self, "crop_pct", float(self.crop_pct))

    def crop_fraction(self, size):
        """The fraction of the short side the eval image shows."""
        return self.crop_pct if self.crop_pct is not None else size / (size + EVAL_CROP_PADDING)

    def resize_size(self, size):
        """What "resize-crop" resizes the short side to: timm's floor(size / crop_pct) (rounded to
        6 decimals first, so 380 / (380 / 384) is 384, not 383)."""
        return math.floor(round(size / self.crop_fraction(size), 6))

    def describe(self, size):
        """The view in words: 'short side bicubic-resized to 256, center crop 224x224'."""
        fraction = (f"{size}/{size + EVAL_CROP_PADDING}" if self.crop_pct is None else f"{self.crop_pct:g}")
        return _DESCRIBED[self.mode].format(fraction=fraction, interpolation=self.interpolation, size=size,
                                            resize=self.resize_size(size))

    def to_json(self):
        return dict(mode=self.mode, crop_pct=self.crop_pct, interpolation=self.interpolation)

    @classmethod
    def from_json(cls, value):
        """A view from what to_json wrote. A string is what checkpoints before views recorded:
        the words of TensorFlow's view, so TF's view. ValueError for anything else."""
        if isinstance(value, str):
            return cls()
        if not isinstance(value, dict) or set(value) - {"mode", "crop_pct", "interpolation"}:
            raise ValueError(f"an eval view is {{mode, crop_pct, interpolation}}, got {value!r}")
        return cls(value.get("mode", "tf"), value.get("crop_pct"), value.get("interpolation", "bicubic"))

    def image(self, source, size):
        """The eval view of a photo, a file path or a Pillow image: a size x size RGB Pillow
        image. Raises UnreadableImage for a file that cannot be decoded (or is too large to
        decode safely)."""
        if isinstance(source, Image.Image):
            return self._of_decoded(source.convert("RGB"), size)
        if self.mode == "tf":
            return tf_eval_image(source, size, self.crop_pct)
        try:
            with Image.open(source) as img:
                rgb = img.convert("RGB")
        except Exception as e:  # noqa: BLE001 - any decoding failure is this file's, reported as such
            text = str(e) or type(e).__name__
            raise UnreadableImage(source, text if type(e).__name__ in text else f"{type(e).__name__}: {text}") \
                from None
        return self._of_decoded(rgb, size)

    def _of_decoded(self, rgb, size):
        if self.mode == "tf":  # a file is decoded at reduced scale where that keeps the crop (images.py)
            box = center_crop_box(rgb.width, rgb.height, size, self.crop_pct)
            return rgb.resize((size, size), INTERPOLATIONS[self.interpolation], box=box)
        return resize_then_crop(rgb, size, self.resize_size(size), INTERPOLATIONS[self.interpolation],
                                squash=self.mode == "squash-crop")


TF_VIEW = EvalView()


def center_crop_box(width, height, size, fraction=None):
    """Square center crop of `fraction` of the short side, by default size / (size + 32) (TF
    EfficientNet eval)."""
    fraction = size / (size + EVAL_CROP_PADDING) if fraction is None else fraction
    side = int(fraction * min(width, height))
    side = max(1, side)
    # TF rounds the offset up ((d - side + 1) // 2); kept so crops match pixel for pixel.
    left = (width - side + 1) // 2
    top = (height - side + 1) // 2
    return left, top, left + side, top + side


def tf_eval_image(path, size, fraction=None):
    """TensorFlow's eval view of the photo at `path`: center crop (of `fraction` of the short
    side, default size / (size + 32)), size x size RGB."""
    return decode_crop(path, lambda w, h: center_crop_box(w, h, size, fraction), size)


def resize_then_crop(img, size, resize, resample, squash=False):
    """torchvision's Resize(resize) (or Resize((resize, resize)) with `squash`) then
    CenterCrop(size), on a Pillow image, with torchvision's arithmetic."""
    width, height = img.size
    if squash:
        new = (resize, resize)
    elif width <= height:
        new = (resize, int(resize * height / width))
    else:
        new = (int(resize * width / height), resize)
    if new != img.size:
        img = img.resize(new, resample)
    width, height = img.size
    if size > width or size > height:  # only when crop_pct > 1, which EvalView refuses
        raise ValueError(f"a {width}x{height} image has no {size}x{size} center crop")
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    return img.crop((left, top, left + size, top + size))
