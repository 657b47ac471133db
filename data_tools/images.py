"""Decode one image file to an RGB crop, whatever the file really is.

ImageNet's train set holds CMYK JPEGs, grayscale JPEGs and a PNG named .JPEG; Pillow
sniffs the real format from the content, and every mode is converted to RGB here.
JPEGs are decoded at reduced scale (Pillow's draft mode: libjpeg's DCT scaling by 1/2,
1/4 or 1/8) whenever the crop still covers at least the output size after scaling, which
skips most of the decoding work for large photos without losing any output resolution.
"""
import math

from PIL import Image

from .errors import UnreadableImage

BICUBIC = Image.Resampling.BICUBIC


def decode_crop(path, choose_box, size):
    """The crop `choose_box(width, height)` of the image at `path`, resized to size x size RGB.

    `choose_box` gets the full-resolution size (read from the header before decoding), so
    the crop is known before draft mode picks the decoding scale.
    """
    try:
        img = Image.open(path)
    except Exception as e:
        raise UnreadableImage(path, _describe(e)) from None
    with img:
        left, top, right, bottom = choose_box(img.width, img.height)
        try:
            scale = _draft(img, right - left, bottom - top, size)
            img.load()
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            box = (left / scale, top / scale, right / scale, bottom / scale)
            return rgb.resize((size, size), BICUBIC, box=box)
        except Exception as e:
            raise UnreadableImage(path, _describe(e)) from None


def _draft(img, crop_width, crop_height, size):
    """Ask for DCT-scaled decoding that keeps the crop >= size on both sides; the scale used."""
    if img.format != "JPEG":
        return 1
    # Pillow picks the largest scale s in (8, 4, 2, 1) with s <= full // requested on both
    # axes; requesting full * size / crop (rounded up) guarantees crop / s >= size.
    requested = (math.ceil(img.width * size / crop_width), math.ceil(img.height * size / crop_height))
    full_width = img.width
    drafted = img.draft("RGB", requested)
    if drafted is None:
        return 1
    return full_width / drafted[1][2]


def _describe(error):
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if type(error).__name__ not in text else text
