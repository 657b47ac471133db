"""Pixels leave the data pipeline as uint8 RGB, NHWC; normalisation happens where the model runs.

Turning 224x224x3 bytes into normalised float32 is a large share of a data worker's time
per image even in Pillow's C code, and float32 is four times the bytes to copy between
processes. So a dataset hands out the raw RGB bytes and names its per-channel
`Normalization`; the runtime applies (pixel / 255 - mean) / std as the first thing on the
device (tinyeffnet/training/runtime.py: one fused multiply-add in XLA), or with the
256-entry tables below on the pure-Python backend.
"""
from typing import NamedTuple

from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)  # pixels to [-1, 1]: some published weights expect this


class Normalization(NamedTuple):
    """Per-channel (R, G, B) mean and std of pixels on [0, 1]."""
    mean: tuple
    std: tuple

    @classmethod
    def gray(cls, mean, std):
        """The same statistics for all three channels (grayscale replicated to RGB)."""
        return cls((mean,) * 3, (std,) * 3)

    @property
    def scale(self):
        """Per channel: what a uint8 pixel is multiplied by (1 / (255 std))."""
        return tuple(1.0 / (255.0 * s) for s in self.std)

    @property
    def offset(self):
        """Per channel: what is then added (-mean / std)."""
        return tuple(-m / s for m, s in zip(self.mean, self.std))

    def floats(self, pixels):
        """Normalised values of uint8 RGB bytes (HWC or NHWC, channel last), as a list of floats."""
        if len(pixels) % 3:
            raise ValueError(f"RGB pixels come in threes, got {len(pixels)} bytes")
        tables = [[v * scale + offset for v in range(256)] for scale, offset in zip(self.scale, self.offset)]
        out = [0.0] * len(pixels)
        for channel, table in enumerate(tables):
            out[channel::3] = [table[v] for v in pixels[channel::3]]
        return out


def rgb_bytes(image):
    """uint8 HWC RGB bytes of a Pillow image; grayscale ('L') is replicated to three channels."""
    if image.mode == "L":
        image = Image.merge("RGB", (image, image, image))
    elif image.mode != "RGB":
        raise ValueError(f"expected an RGB or L image, got mode {image.mode}")
    return image.tobytes()
