"""Image files named on a command line, as a dataset the Loader batches (predict's input).

`find_images(paths)` expands folders (recursively: every file with an image extension,
sorted) and keeps files as given; `ImageFiles` prepares each file the way a network's eval
split does (photos: its EvalView; Fashion-MNIST models: grayscale resized), so the Loader's
worker processes decode them in parallel. Each example's label is its own index: eval
batches leave unreadable files out and move the rest to the front, and the index says
which file a row is.
"""
import os

from PIL import Image

from .errors import DataError, UnreadableImage
from .imagenet import IMAGE_EXTENSIONS
from .pixels import rgb_bytes


def find_images(paths):
    """The image files of `paths` (files as given, folders walked recursively for image
    extensions, sorted), in order, each once. DataError for a path that does not exist or a
    folder without images."""
    found, seen = [], set()
    for path in paths:
        if os.path.isdir(path):
            inside = sorted(os.path.join(folder, name) for folder, _, names in os.walk(path)
                            for name in names if name.lower().endswith(IMAGE_EXTENSIONS))
            if not inside:
                raise DataError(f"{path} is a folder without images ({', '.join(IMAGE_EXTENSIONS)}, in it or in "
                                "its subfolders): give image files or folders that hold some")
        elif os.path.exists(path):
            inside = [path]
        else:
            raise DataError(f"{path} does not exist: give image files or folders of images")
        for name in inside:
            if name not in seen:
                seen.add(name)
                found.append(name)
    return found


class ImageFiles:
    """Loader-facing dataset of files: example i is file i's eval image (uint8 HWC RGB)."""
    training = False
    class_names = ()

    def __init__(self, files, image_size, normalization, view=None, gray=False):
        self.files, self.image_size, self.normalization = list(files), image_size, normalization
        self.view, self.gray = view, gray
        self.description = f"{len(self.files)} image file(s)"

    @property
    def num_classes(self):
        return 0

    def __len__(self):
        return len(self.files)

    def label(self, index):
        return index

    def source(self, index):
        return self.files[index]

    def example(self, index, rng):
        path = self.files[index]
        if not self.gray:
            return rgb_bytes(self.view.image(path, self.image_size))
        try:
            with Image.open(path) as img:
                gray = img.convert("L").resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        except Exception as e:  # noqa: BLE001 - any decoding failure is this file's, reported as such
            raise UnreadableImage(path, f"{type(e).__name__}: {e}") from None
        return rgb_bytes(gray)
