"""Small synthetic ImageNet-style folders for tests and benchmarks.

Images are smooth colour fields with shapes and sensor-like noise, saved as quality-90
JPEGs: flat random colours would compress to almost nothing and decode unrealistically
fast, while these land near the size (and decoding cost) of real 500x375 photos.
"""
import os
import random

from PIL import Image, ImageDraw

PHOTO_SIZE = (500, 375)
# Share of uniform noise: puts a 500x375 quality-90 JPEG near 90 KB, like an ImageNet photo.
NOISE = 0.2


def synthetic_photo(rng, size=PHOTO_SIZE):
    """An RGB Pillow image: gradients, a few filled shapes, noise."""
    width, height = size
    corners = Image.frombytes("RGB", (4, 3), bytes(rng.randrange(256) for _ in range(36)))
    img = corners.resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        box = (x, y, x + rng.randrange(20, 200), y + rng.randrange(20, 200))
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    # Noise from rng (not Image.effect_noise, which uses C's unseeded rand()).
    noise = Image.frombytes("RGB", size, rng.randbytes(3 * width * height))
    return Image.blend(img, noise, NOISE)


def write_photo(path, rng, size=PHOTO_SIZE, mode="RGB", format="JPEG"):
    """Save a synthetic photo at `path` in `mode` (RGB, L, CMYK, ...) and `format`."""
    img = synthetic_photo(rng, size)
    if mode != "RGB":
        img = img.convert(mode)
    if format == "JPEG":
        img.save(path, "JPEG", quality=90)
    else:
        img.save(path, format)


def write_corrupt_jpeg(path, rng, size=PHOTO_SIZE):
    """A JPEG cut off after a third of its bytes: the header reads fine, decoding fails."""
    write_photo(path, rng, size)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 3])


def class_names(count):
    """WordNet-id-like folder names n00000000, n00000001, ..."""
    return [f"n{i:08d}" for i in range(count)]


def make_image_folder(root, classes=3, train_per_class=4, val_per_class=2, size=PHOTO_SIZE, seed=0,
                      odd_files=True):
    """Write root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG; returns the list of odd files.

    With odd_files, the first class's train folder also gets the kinds of file ImageNet
    has: a CMYK JPEG, a grayscale JPEG, a PNG named .JPEG, and one corrupt JPEG.
    """
    rng = random.Random(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name in class_names(classes):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                write_photo(os.path.join(folder, f"{name}_{i}.JPEG"), rng, size)
    odd = {}
    if odd_files:
        folder = os.path.join(root, "train", class_names(classes)[0])
        odd = {kind: os.path.join(folder, f"odd_{kind}.JPEG") for kind in ("cmyk", "gray", "png", "corrupt")}
        write_photo(odd["cmyk"], rng, size, mode="CMYK")
        write_photo(odd["gray"], rng, size, mode="L")
        write_photo(odd["png"], rng, size, format="PNG")
        write_corrupt_jpeg(odd["corrupt"], rng, size)
    return odd
