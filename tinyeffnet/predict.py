"""`python -m tinyeffnet.predict --checkpoint PATH IMAGE_OR_FOLDER...`: the top classes of each image.

Files are taken as given, folders recursively (every .jpg/.jpeg/.png/.bmp/.webp, sorted).
Each image is prepared the way the checkpoint's network is evaluated (recorded in the
checkpoint: its resolution, its mean/std and, for photos, its eval view: a converted
published model's library's, else TensorFlow's center crop), decoded by the data
loader's worker processes, and run through one compiled eval program in batches
(--batch-size; the last batch padded). Results stream as they come, one line per image
(--json: JSON Lines, --csv: CSV); a progress bar shows on a terminal. A 1000-class
ImageNet model's classes are named from ImageNet's list (data_tools/imagenet_classes.txt).

Unreadable files are one line each on stderr and counted at the end; the rest go on. With
--json or --csv they also get their record in the output, in order ({"image", "error"}; a
CSV row with the error column filled), so a program reading it sees every file it gave.
Exit status: 0, 1 when some file could not be read, 2 for bad input (a missing path, a
folder without images, a checkpoint that does not load).
"""
import csv
import sys
import time

from data_tools import DataError
from data_tools.image_files import find_images

from ._cli import ArgumentParser, run_command, weights_choice
from ._files import dumps
from .inference import Predictor
from .training.checkpoint import CheckpointError
from .training.state import load_model

DEFAULT_BATCH = 32


def results(predictor, loader, top):
    """Per file of `loader`, in order: {"image", "top": [{class_index, name, probability}]}, or
    {"image", "error"} for a file that could not be read."""
    for p in predictor.predictions(loader, top):
        if p.error is not None:
            yield dict(image=p.image, error=p.error)
        else:
            yield dict(image=p.image, top=[dict(class_index=c.index, name=c.name, probability=c.probability)
                                           for c in p.top])


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
                                           for field in ("class_index", "name", "probability")] + ["error"])

    def write(self, result):
        """One result; an unreadable file's ({"image", "error"}) only where the format has room
        for it (JSON Lines, CSV): on a terminal it is the error line on stderr alone."""
        if self.kind == "json":
            self.out.write(dumps(result) + "\n")
        elif self.kind == "csv":
            if "error" in result:
                self.csv.writerow([result["image"]] + [""] * (3 * self.top) + [result["error"]])
            else:
                self.csv.writerow([result["image"]] + [v for t in result["top"] for v in
                                                       (t["class_index"], t["name"], repr(t["probability"]))] + [""])
        elif "error" not in result:
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
    p.add_checkpoint_options(json_help="print JSON Lines: one object per image, {image, top} or {image, error}",
                             data=False)
    p.add_argument("--csv", action="store_true", help="print CSV: a header, then one row per image (its error column "
                   "filled for a file that could not be read)")
    args = p.parse_args(argv)
    for flag, value, low in (("--top", args.top, 1), ("--batch-size", args.batch_size, 1),
                             ("--workers", args.workers, 0)):
        if value is not None and value < low:
            p.error(f"{flag} must be at least {low}, got {value}")
    if args.json and args.csv:
        p.error("--json and --csv are two formats: choose one")
    try:
        files = find_images(args.images)  # before the checkpoint loads: a wrong path fails at once
        net, _ = load_model(args.checkpoint, args.backend, weights_choice(args))
        predictor = Predictor(net, args.batch_size)
        loader = predictor.open(files, args.workers)
    except (ValueError, DataError, CheckpointError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    top = min(args.top, predictor.spec.num_classes)
    writer = Writer("json" if args.json else "csv" if args.csv else "text", top)
    progress = Progress(len(loader.dataset))
    unreadable = 0
    try:
        for result in results(predictor, loader, top):
            progress.clear()
            writer.write(result)
            sys.stdout.flush()  # in order with the error lines, where both go to one terminal
            if "error" in result:
                unreadable += 1
                print(f"error: {result['error']}", file=sys.stderr)
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
        print(f"error: {_unreadable_count(unreadable, progress.total)}", file=sys.stderr)
        return 1
    return 0


def _unreadable_count(unreadable, total):
    if unreadable < total:
        return (f"{unreadable} of {total} image files could not be read (each named above); the others have their "
                "results")
    if total == 1:
        return "the image file could not be read (named above)"
    return f"none of the {total} image files could be read (each named above)"


if __name__ == "__main__":
    run_command(main)
