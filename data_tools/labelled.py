"""What every dataset the Loader reads has in common: examples by index, each with a label.

A dataset names its `class_names` (label i is class_names[i]), its pixels' `normalization`
and whether it is a training split (augmented, shuffled); it says where example i comes
from (`source(i)`, for messages) and builds its uint8 HWC RGB bytes (`example(i, rng)`).
"""
from .errors import DataError


class LabelledImages:
    """Base of the Loader's datasets: `labels[i]` is example i's class index."""
    class_names = ()

    def __init__(self, labels, image_size, training, description):
        if not isinstance(image_size, int) or image_size < 1:
            raise DataError(f"image size must be a positive whole number, got {image_size!r}")
        self.labels, self.image_size, self.training, self.description = labels, image_size, training, description

    @property
    def num_classes(self):
        return len(self.class_names)

    def __len__(self):
        return len(self.labels)

    def label(self, index):
        return self.labels[index]

    def source(self, index):
        raise NotImplementedError

    def example(self, index, rng):
        raise NotImplementedError
