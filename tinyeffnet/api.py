"""The Python API: make a network, load a trained or converted one, classify images.

    import tinyeffnet
    net = tinyeffnet.create_model("seend@all", num_classes=10)   # a variant, or b0 ... b7
    net = tinyeffnet.load("runs/base-b0-20261207-101500")         # a run, a checkpoint, converted weights
    for p in tinyeffnet.classify(net, ["shoe.png", "bag.png"], top=3):
        print(p.image, [(c.name, round(c.probability, 3)) for c in p.top])

The commands are thin layers over the same code: `predict` prints what `classify` returns,
`train` and `evaluate` build their networks with `build_model` as `create_model` does.
"""
from .inference import Predictor
from .model import ModelSpec, build_model, canonical_model
from .training.state import load_model


def create_model(name="base", num_classes=1000, *, model=None, backend="python", init="xavier", seed=0, **options):
    """A new, initialised network (an EfficientNet module, in training mode).

    `name`: one of the paper's variants of B0 (base, seend@noskip, seend@hasskip, seend@all,
    nose@noskip, nose@hasskip, nose@all; case-insensitive, the paper's spellings work), a
    variant of your own (seend@stage8, nose@stage2-7), or a model size b0 ... b7 (its base
    variant); `model` scales a variant to another size. `backend`: "python" (pure Python,
    float64: every value can be stepped through) or "jax". `options`: width, depth, padding,
    bn_eps, image_size (the network's ModelSpec) and bn_momentum, dropout, drop_connect (how
    it trains). Its `spec` says what it is; `net.num_parameters()` counts it."""
    try:
        size, variant = canonical_model(name), "base"
    except ValueError:
        size, variant = model, name
    else:
        if model is not None and canonical_model(model) != size:
            raise ValueError(f"create_model({name!r}, model={model!r}): the name is a model size already; give "
                             "a variant as the name to scale it with model=")
    return build_model(variant, size, num_classes, init=init, seed=seed, backend=backend, **options)


def load(path, *, backend="jax", ema=None):
    """The network a checkpoint holds, in eval mode, with its `spec` (a ModelSpec: which
    network, and how it is fed: resolution, normalization, eval view, class names).

    `path`: a checkpoint file, a run's work directory (its best checkpoint, else its latest),
    or a folder holding one converted .safetensors file (python -m tinyeffnet.convert).
    `ema`: True the EMA weights, False the raw ones, None the checkpoint's own choice (EMA
    where it holds them). CheckpointError (one line) for a path that holds no checkpoint."""
    net, _ = load_model(path, backend, ema)
    return net


def classify(net, images, *, top=5, batch_size=32, workers=0):
    """The `top` classes of each image, best first: a list of Prediction(image, top, error),
    `top` a list of ClassScore(index, name, probability), in the order given.

    `images`: a file path, a folder (its image files, recursively, sorted), a Pillow image,
    or a list of them. Each is prepared the way `net` is fed (`net.spec.feed()`: its
    resolution, normalization and eval view), exactly as `python -m tinyeffnet.predict` does,
    through one program compiled once per network and batch size. A file that cannot be read
    gets a Prediction with `error` set and `top` None. `workers`: decoding processes (0:
    this one)."""
    if not isinstance(images, (list, tuple)):
        images = [images]
    predictor = Predictor.of(net, batch_size)
    loader = predictor.open(images, workers)
    try:
        return list(predictor.predictions(loader, top))
    finally:
        loader.close()


__all__ = ["create_model", "load", "classify", "ModelSpec"]
