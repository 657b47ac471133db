"""Data pipeline of tinyeffnet: datasets, augmentation and a deterministic batch loader.

    from data_tools import open_dataset, Loader
    train = Loader(open_dataset("default", "train", image_size=32), batch_size=128, workers=2)
    for images, labels, valid in train.batches(epoch=0):
        ...

No numpy anywhere: Pillow's C code decodes and augments, pixels travel as uint8 bytes, and
the runtime normalises them on the device.
"""
from .errors import DataError, UnreadableImage
from .loader import Batch, Loader
from .datasets import open_dataset

__all__ = ["Batch", "DataError", "Loader", "UnreadableImage", "open_dataset"]
