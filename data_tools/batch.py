"""One batch from dataset indices: per-example seeding, and what happens to unreadable files.

Example `index` of epoch `epoch` is augmented by random.Random(stable_seed(seed, epoch,
index, 0)). In training an unreadable example is replaced by the next dataset example
(index + 1, index + 2, ...) seeded with attempt 1, 2, ..., so the batch stays full for
batch norm. In eval it is left out: readable examples move to the front and `valid`
counts only them, so accuracy is computed on the images that exist instead of counting a
stand-in twice. Eval batches shorter than batch_size are padded by repeating their real
examples (or zeros for a host whose shard lies past the end of the data).
"""
import hashlib
import random
from typing import NamedTuple

from .errors import DataError, UnreadableImage

# Consecutive unreadable files tolerated for one training example before giving up.
MAX_SUBSTITUTES = 64


class BuiltBatch(NamedTuple):
    parts: list       # uint8 HWC RGB bytes of each of the batch_size examples (padding repeats objects)
    labels: list
    valid: int
    unreadable: list  # (source, reason) of every unreadable file met


def stable_seed(*parts):
    """A 64-bit seed from ints/strings that is the same in every process and Python run.

    Python's hash() is salted per process (PYTHONHASHSEED), so it cannot be used here.
    """
    key = ",".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def build_batch(dataset, seed, epoch, indices, batch_size):
    """The batch of dataset examples `indices` (fewer than batch_size only in eval)."""
    parts, labels, unreadable = [], [], []
    if dataset.training:
        if len(indices) != batch_size:
            raise ValueError(f"training batches must be full: got {len(indices)} of {batch_size} indices")
        for index in indices:
            pixels, label = _example_or_substitute(dataset, seed, epoch, index, unreadable)
            parts.append(pixels)
            labels.append(label)
        return BuiltBatch(parts, labels, batch_size, unreadable)
    for index in indices:
        try:
            parts.append(dataset.example(index, None))
        except UnreadableImage as e:
            unreadable.append((e.source, e.reason))
            continue
        labels.append(dataset.label(index))
    valid = len(labels)
    zeros = bytes(3 * dataset.image_size * dataset.image_size) if not valid else None
    for slot in range(valid, batch_size):
        parts.append(parts[slot % valid] if valid else zeros)
        labels.append(labels[slot % valid] if valid else 0)
    return BuiltBatch(parts, labels, valid, unreadable)


def check_readable(dataset, seed, epoch, indices):
    """Decode the examples `indices` as their batch would, and raise the DataError a run would
    meet later: a training example followed by MAX_SUBSTITUTES unreadable files, or an eval
    split none of whose `indices` can be read. Nothing is kept."""
    if dataset.training:
        for index in indices:
            _example_or_substitute(dataset, seed, epoch, index, [])
        return
    built = build_batch(dataset, seed, epoch, indices, len(indices))
    if indices and not built.valid:
        source, reason = built.unreadable[0]
        raise DataError(f"none of the first {len(indices)} images of {dataset.description} can be read ({source}: "
                        f"{reason}): check the dataset")


def _example_or_substitute(dataset, seed, epoch, index, unreadable):
    size = len(dataset)
    for attempt in range(MAX_SUBSTITUTES + 1):
        candidate = (index + attempt) % size
        rng = random.Random(stable_seed(seed, epoch, index, attempt))
        try:
            return dataset.example(candidate, rng), dataset.label(candidate)
        except UnreadableImage as e:
            unreadable.append((e.source, e.reason))
    raise DataError(f"{MAX_SUBSTITUTES + 1} unreadable images in a row from {dataset.source(index)}: "
                    f"the dataset looks damaged; check those files")
