"""A grid of small images with a label under each, e.g. a batch of training images."""
from PIL import Image

from .canvas import TEXT, new_figure


def image_grid(batch, shape, labels=None, columns=8, scale=4, title=None):
    """`batch`: uint8 values of N images in NHWC order, flat (as a data loader yields them);
    `shape`: (N, H, W, C) with C 1 or 3; `labels`: N strings or None. Each image is enlarged
    `scale` times with nearest-neighbour sampling, so the pixels stay visible."""
    n, h, w, c = shape
    if c not in (1, 3) or len(batch) != n * h * w * c:
        raise ValueError(f"image_grid: {len(batch)} values do not make images of shape {shape} with 1 or 3 channels")
    columns = min(columns, n)
    rows = -(-n // columns)
    cell_w, cell_h = w * scale + 16, h * scale + (28 if labels else 12)
    top = 44 if title else 8
    image, draw, fonts = new_figure((max(columns * cell_w + 8, 240), top + rows * cell_h + 4), title)
    size = h * w * c
    for i in range(n):
        pixels = bytes(batch[i * size:(i + 1) * size])
        tile = Image.frombytes("L" if c == 1 else "RGB", (w, h), pixels).resize((w * scale, h * scale), Image.NEAREST)
        x, y = 8 + (i % columns) * cell_w, top + (i // columns) * cell_h
        image.paste(tile, (x, y))
        if labels:
            draw.text((x + w * scale / 2, y + h * scale + 4), str(labels[i]), fill=TEXT, font=fonts["small"],
                      anchor="ma")
    return image
