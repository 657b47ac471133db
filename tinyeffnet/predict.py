"""`python -m tinyeffnet.predict --checkpoint PATH IMAGE...`: the top classes of each image.

Each image is prepared the way the checkpoint's training data was evaluated (recorded in
the checkpoint: photos get the eval center crop at the checkpoint's resolution and its
mean/std), then the model runs in eval mode on the chosen backend. A 1000-class ImageNet
model's classes are named from ImageNet's list (data_tools/imagenet_classes.txt).
"""
import sys

from data_tools import DataError
from data_tools.imagenet import NUM_CLASSES as IMAGENET_CLASSES
from data_tools.imagenet import imagenet_class_names
from data_tools.spec import eval_image, spec_kind

from ._cli import ArgumentParser, weights_choice
from ._files import dumps
from .engine import Tensor
from .engine.functional import softmax
from .training.checkpoint import CheckpointError
from .training.evaluation import spec_normalization
from .training.state import load_model


def predict(checkpoint, images, backend="jax", top=5, use_ema=None):
    """One result per image, in order: {"image", "top": [...]} or {"image", "error"}."""
    from backends import get_backend
    net, meta = load_model(checkpoint, backend, use_ema)
    b = get_backend(backend)
    spec = net.spec
    size, names, recorded = spec.resolution, class_names(spec), spec_normalization(spec, spec.data)
    results = []
    for path in images:
        try:
            pixels, normalization = eval_image(spec.data, path, size)
        except DataError as e:
            results.append(dict(image=path, error=str(e)))
            continue
        normalization = recorded or normalization
        x = Tensor(b.from_flat(normalization.floats(pixels), (1, size, size, 3), b.default_float), b)
        probs = softmax(net(x)).to_flat()
        best = sorted(range(len(probs)), key=lambda i: -probs[i])[:top]
        results.append(dict(image=path, top=[dict(class_index=i, name=names[i], probability=probs[i]) for i in best]))
    return results


def class_names(spec):
    """The names to show: the checkpoint's (ImageNet wnids as their WordNet lemmas), ImageNet's
    for a 1000-class model that records none, else the class indices."""
    names = spec.class_names
    if names and len(names) == spec.num_classes:
        return imagenet_class_names(list(names)) if spec_kind(spec.data) == "imagenet" else list(names)
    if spec.num_classes == IMAGENET_CLASSES:
        return imagenet_class_names()
    return [str(i) for i in range(spec.num_classes)]


def main(argv=None):
    p = ArgumentParser(prog="python -m tinyeffnet.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--top", type=int, default=5, help="how many classes to show (default 5)")
    p.add_weights_choice()
    p.add_checkpoint_options(json_help="print one JSON list", data=False)
    args = p.parse_args(argv)
    if args.top < 1:
        p.error(f"--top must be at least 1, got {args.top}")
    try:
        results = predict(args.checkpoint, args.images, args.backend, args.top, weights_choice(args))
    except (ValueError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(dumps(results))
    else:
        for r in results:
            if "error" in r:
                print(f"error: {r['error']}", file=sys.stderr)
                continue
            print(r["image"])
            for t in r["top"]:
                print(f"  {t['probability']:7.2%}  {t['name']}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
