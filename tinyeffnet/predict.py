"""`python -m tinyeffnet.predict --checkpoint PATH IMAGE_OR_FOLDER...`: the top classes of each image.

Files are taken as given, folders recursively (every .jpg/.jpeg/.png/.bmp/.webp, sorted).
Each image is prepared the way the checkpoint's network is evaluated (recorded in the
checkpoint: its resolution, its mean/std and, for photos, its eval view: a converted
published model's library's, else TensorFlow's center crop), decoded by the data
loader's worker processes, and run through one compiled eval program in batches
(--batch-size; the last batch padded). Results stream as they come, one line per image
(--json: JSON Lines, --csv: CSV); a progress bar shows on a terminal. A 1000-class
ImageNet model's classes are named from ImageNet's list (data_tools/imagenet_classes.txt).

Unreadable files are one line each on stderr and counted at the end; the rest go on.
Exit status: 0, 1 when some file could not be read, 2 for bad input (a missing path, a
folder without images, a checkpoint that does not load).
"""
import csv
import sys
import time

from data_tools import DataError
from data_tools.image_files import find_images
from data_tools.imagenet import NUM_CLASSES as IMAGENET_CLASSES
from data_tools.imagenet import imagenet_class_names
from data_tools.spec import spec_kind

from ._cli import ArgumentParser, run_command, weights_choice
from ._files import dumps
from .training.checkpoint import CheckpointError
from .training.evaluation import Predictor

DEFAULT_BATCH = 32


def class_names(spec):
    """The names to show: the checkpoint's (ImageNet wnids as their WordNet lemmas), ImageNet's
    for a 1000-class model that records none, else the class indices."""
    names = spec.class_names
    if names and len(names) == spec.num_classes:
        return imagenet_class_names(list(names)) if spec_kind(spec.data) == "imagenet" else list(names)
    if spec.num_classes == IMAGENET_CLASSES:
        return imagenet_class_names()
    return [str(i) for i in range(spec.num_classes)]


def results(predictor, loader, top):
    """Per file of `loader`, in order: {"image", "top": [{class_index, name, probability}]}, or
    {"image", "error"} for a file that could not be read."""
    names = class_names(predictor.spec)
    for image, best, reason in predictor.classes(loader, top):
        if best is None:
            yield dict(image=image, error=describe_unreadable(image, reason))
        else:
            yield dict(image=image, top=[dict(class_index=i, name=names[i], probability=p) for i, p in best])


def describe_unreadable(image, reason):
    if "DecompressionBomb" in reason:
        return f"{image} is too large to decode safely ({reason}); shrink it first"
    return f"{image} is not a readable image ({reason})"


class Progress:
    """`done/total images` and the rate on one stderr line, redrawn in place; only on a terminal."""

    def __init__(self, total, stream=None):
        self.total, self.stream, self.done = total, stream or sys.stderr, 0
        self.shown = self.stream.isatty()
        self.start = time.monotonic()

    def advance(self):
        self.done += 1

    def draw(self):
        if self.shown:
            width = 30
            filled = width * self.done // max(self.total, 1)
            rate = self.done / max(time.monotonic() - self.start, 1e-9)
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} images, "
                              f"{rate:.1f}/s")
            self.stream.flush()

    def clear(self):
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()


class Writer:
    """Results to stdout as they come: text (one line per image), JSON Lines or CSV."""

    def __init__(self, kind, top, out=None):
        self.kind, self.top, self.out = kind, top, out or sys.stdout
        if kind == "csv":
            self.csv = csv.writer(self.out, lineterminator="\n")
            self.csv.writerow(["image"] + [f"{field}_{rank}" for rank in range(1, top + 1)
                                           for field in ("class_index", "name", "probability")])

    def write(self, result):
        if self.kind == "json":
            self.out.write(dumps(result) + "\n")
        elif self.kind == "csv":
            self.csv.writerow([result["image"]] + [v for t in result["top"]
                                                   for v in (t["class_index"], t["name"], repr(t["probability"]))])
        else:
            self.out.write(f"{result['image']}: " + " | ".join(f"{t['probability']:.2%} {t['name']}"
                                                               for t in result["top"]) + "\n")


def main(argv=None):
    p = ArgumentParser(prog="python -m tinyeffnet.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and folders of images")
    p.add_argument("--top", type=int, default=5, help="how many classes to show per image (default 5)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help=f"images per compiled batch (default {DEFAULT_BATCH})")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes (default: none for one batch of images, else one per core, at most 8)")
    p.add_weights_choice()
    p.add_checkpoint_options(json_help="print JSON Lines: one object {image, top} per image", data=False)
    p.add_argument("--csv", action="store_true", help="print CSV: a header, then one row per image")
    args = p.parse_args(argv)
    for flag, value, low in (("--top", args.top, 1), ("--batch-size", args.batch_size, 1),
                             ("--workers", args.workers, 0)):
        if value is not None and value < low:
            p.error(f"{flag} must be at least {low}, got {value}")
    if args.json and args.csv:
        p.error("--json and --csv are two formats: choose one")
    try:
        files = find_images(args.images)  # before the checkpoint loads: a wrong path fails at once
        predictor = Predictor(args.checkpoint, args.backend, weights_choice(args), args.batch_size)
        loader = predictor.open(files, args.workers)
    except (ValueError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    top = min(args.top, predictor.spec.num_classes)
    writer = Writer("json" if args.json else "csv" if args.csv else "text", top)
    progress = Progress(len(loader.dataset))
    unreadable = 0
    try:
        for result in results(predictor, loader, top):
            progress.clear()
            if "error" in result:
                unreadable += 1
                sys.stdout.flush()  # in order with the results before it, where both go to one terminal
                print(f"error: {result['error']}", file=sys.stderr)
            else:
                writer.write(result)
                sys.stdout.flush()
            progress.advance()
            progress.draw()
    except RuntimeError as e:  # a decoding process died (killed for memory, say): what came out stays
        progress.clear()
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        progress.clear()
        loader.close()
    if unreadable:
        print(f"error: {unreadable} of {progress.total} image files could not be read (each named above); "
              "the others have their results", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_command(main)
