"""Classifying images with a network: its top classes and their probabilities.

`Predictor(net)` compiles the network's eval-mode forward pass once, for batches of
`batch_size` images; `open(images)` prepares image files, folders or Pillow images the way
the network's eval data is prepared (`net.spec.feed()`: its resolution, normalization and
eval view), decoded by the data loader (in worker processes where there are many); and
`predictions(loader)` streams one `Prediction` per image, in order. The predict command and
`tinyeffnet.classify` are thin layers over it.
"""
import heapq
import os
import weakref
from typing import NamedTuple

from data_tools import Loader
from data_tools.datasets import data_kind, open_files
from data_tools.imagenet import NUM_CLASSES as IMAGENET_CLASSES
from data_tools.imagenet import imagenet_class_names

from .engine import functional as F
from .training.runtime import make_runtime
from .training.step import StepOptions, logits_of


class ClassScore(NamedTuple):
    index: int
    name: str
    probability: float


class Prediction(NamedTuple):
    """One image's result: `top` (best first) or, for an image that could not be read,
    `error` (why) and `top` None."""
    image: object            # the file path or the Pillow image, as given
    top: list
    error: str = None


def class_names(spec):
    """The names to show: the spec's (ImageNet wnids as their WordNet lemmas), ImageNet's for
    a 1000-class network that records none, else the class indices."""
    names = spec.class_names
    if names and len(names) == spec.num_classes:
        return imagenet_class_names(list(names)) if data_kind(spec.data) == "imagenet" else list(names)
    if spec.num_classes == IMAGENET_CLASSES:
        return imagenet_class_names()
    return [str(i) for i in range(spec.num_classes)]


def make_predict_step(net, options=StepOptions()):
    """predict_step(params, buffers, images, labels, valid) -> (N, K) class probabilities,
    eval mode. `labels` and `valid` are not used: they are the eval step's arguments, so the
    runtime compiles and shards it the same way."""
    def predict_step(params, buffers, images, labels, valid):
        net.eval()
        with net.bind(params, buffers):
            return F.softmax(logits_of(net, images, options)).data

    return predict_step


def default_workers(images, batch_size):
    """Data loader processes for `images` images: none for one batch (starting them costs more
    than decoding it), else one per core, at most 8."""
    return 0 if images <= batch_size else max(1, min(8, os.cpu_count() or 1))


class Predictor:
    """A network's eval-mode forward pass compiled once for batches of `batch_size` images (a
    multiple of the device count). The network's weights are read at each `predictions`
    call, so a predictor follows a network whose weights are loaded anew."""

    _compiled = weakref.WeakKeyDictionary()  # net -> {batch size: Predictor}: one compilation each

    def __init__(self, net, batch_size=32):
        self.net = net
        self.runtime = make_runtime(net.backend.name)
        devices = self.runtime.device_count
        self.batch_size = max(devices, batch_size - batch_size % devices)
        options = StepOptions(compute_dtype=self.runtime.compute_dtype)
        self.step = self.runtime.compile_eval_step(make_predict_step(net, options))
        self.names = class_names(net.spec)

    @classmethod
    def of(cls, net, batch_size=32):
        """The predictor of `net` for this batch size, made (and compiled) once."""
        by_size = cls._compiled.setdefault(net, {})
        if batch_size not in by_size:
            by_size[batch_size] = cls(net, batch_size)
        return by_size[batch_size]

    @property
    def spec(self):
        return self.net.spec

    def open(self, images, workers=None):
        """A Loader over `images` (files, folders, Pillow images) prepared as the network's eval
        data is; DataError for a path that does not exist or a folder without images."""
        feed = self.spec.feed()
        dataset = open_files(self.spec.data, images, feed.resolution, feed.view)
        workers = default_workers(len(dataset), self.batch_size) if workers is None else workers
        return Loader(dataset, self.batch_size, workers=workers, log_unreadable=False)

    def predictions(self, loader, top=5):
        """One Prediction per image of `loader`, in order, batch by batch."""
        k = self.spec.num_classes
        top = min(top, k)
        normalization = self.spec.feed().normalization
        # put_state copies (the train step donates its state); this program donates nothing, so on
        # one device the network's own arrays serve as they are
        arrays = self.net.arrays()
        state = arrays if self.runtime.device_count == 1 else self.runtime.put_state(arrays)
        dataset, backend = loader.dataset, self.runtime.backend
        for step, batch in enumerate(loader.batches(0)):
            rows = {}
            if batch.valid:
                images, labels, valid = self.runtime.put_batch(batch, loader.batch_shape, normalization)
                probs = backend.to_flat(self.runtime.to_host(self.step(state["params"], state["buffers"], images,
                                                                      labels, valid)))
                for row in range(batch.valid):
                    values = probs[row * k:(row + 1) * k]
                    best = heapq.nlargest(top, range(k), key=values.__getitem__)
                    rows[batch.labels[row]] = [ClassScore(i, self.names[i], values[i]) for i in best]
            first = step * loader.batch_size
            for index in range(first, min(first + loader.batch_size, len(dataset))):
                if index in rows:
                    yield Prediction(dataset.files[index], rows[index])
                    continue
                source = dataset.source(index)
                reason = loader.unreadable_files.get(source, "not decoded")
                yield Prediction(dataset.files[index], None, describe_unreadable(source, reason))


def describe_unreadable(image, reason):
    if "DecompressionBomb" in reason:
        return f"{image} is too large to decode safely ({reason}); shrink it first"
    return f"{image} is not a readable image ({reason})"
