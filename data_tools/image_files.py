"""Image files named on a command line, as a dataset the Loader batches (predict's input).

`find_images(paths)` expands folders (recursively: every file with an image extension,
sorted) and keeps files (and Pillow images, for the Python API) as given; `ImageFiles`
prepares each the way a network's eval split does (photos: its EvalView; Fashion-MNIST
models: grayscale resized), so the Loader's worker processes decode them in parallel. Each
example's label is its own index: eval batches leave unreadable files out and move the rest
to the front, and the index says which file a row is.
"""
import os

from PIL import Image

from .errors import DataError, UnreadableImage
from .imagenet import IMAGE_EXTENSIONS
from .labelled import LabelledImages
from .pixels import rgb_bytes


def find_images(paths):
    """The image files of `paths` (files as given, folders walked recursively for image
    extensions, sorted), in order, each once. DataError for a path that does not exist or a
    folder without images."""
    found, seen = [], set()
    for path in paths:
        if isinstance(path, Image.Image):  # an image in memory is its own example, every time it is given
            found.append(path)
            continue
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


class ImageFiles(LabelledImages):
    """Loader-facing dataset of files (or Pillow images): example i is file i's eval image
    (uint8 HWC RGB), its label i."""

    def __init__(self, files, image_size, normalization, view=None, gray=False):
        self.files = list(files)
        super().__init__(range(len(self.files)), image_size, False, f"{len(self.files)} image file(s)")
        self.normalization, self.view, self.gray = normalization, view, gray

    def source(self, index):
        """File i's path, or words for a Pillow image (messages and the loader's records use it)."""
        item = self.files[index]
        if isinstance(item, Image.Image):
            return f"image {index} (Pillow {item.mode} {item.width}x{item.height})"
        return item

    def example(self, index, rng):
        item = self.files[index]
        try:
            if not self.gray:
                return rgb_bytes(self.view.image(item, self.image_size))
            if isinstance(item, Image.Image):
                return rgb_bytes(self._gray(item))
            with Image.open(item) as img:
                return rgb_bytes(self._gray(img))
        except UnreadableImage:
            raise
        except Exception as e:  # noqa: BLE001 - any decoding failure is this file's, reported as such
            raise UnreadableImage(self.source(index), f"{type(e).__name__}: {e}") from None

    def _gray(self, img):
        return img.convert("L").resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
