"""What network a model is, and how it is fed: `ModelSpec`, the one record of it.

A spec names the network (variant, model size, class count, width and depth multipliers,
padding, BN eps: everything that fixes its shapes and arithmetic) and how its pixels are
prepared (resolution, the data it was trained on, the pixels' mean/std, the eval view, the
class names). The trainer makes one from its flags, every checkpoint records one in its
metadata (`to_meta` / `from_meta`, the only two functions that know those keys), and
evaluate, predict, probe and convert rebuild the network from it (`build_model(spec)`).

The names it understands live here too: variants (the paper's seven and stage ranges of
your own), model sizes B0-B7 with their scaling, and the two arithmetic defaults. Padding
"same" is TensorFlow's (the paper's network; what TF-trained weights expect), "symmetric"
is PyTorch's; BN eps 1e-3 is TensorFlow's, PyTorch's BatchNorm2d uses 1e-5. Weights
trained with one setting give other logits with the other.
"""
import dataclasses
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from data_tools.datasets import NORMALIZATIONS, data_kind
from data_tools.eval_view import TF_VIEW, EvalView
from data_tools.pixels import Normalization

from ..nn import PADDINGS

# model -> (width, depth, resolution, dropout)
SCALING = {
    "b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5),
}
# variant -> (SE position in the blocks it changes, which blocks)
VARIANTS = {
    "base": ("dw", "all"),
    "seend@noskip": ("end", "noskip"), "seend@hasskip": ("end", "hasskip"), "seend@all": ("end", "all"),
    "nose@noskip": (None, "noskip"), "nose@hasskip": (None, "hasskip"), "nose@all": (None, "all"),
}
DEFAULT_PADDING, DEFAULT_BN_EPS = "same", 1e-3  # TensorFlow's: what the paper's network used
FIRST_STAGE, LAST_STAGE = 2, 8  # the MBConv stages of the paper's Table I
_STAGE_VARIANT = re.compile(r"(seend|nose)@stage(\d+)(?:-(\d+))?")
_POSITIONS = {"seend": "end", "nose": None}

# What fixes the network's shapes and arithmetic: a checkpoint resumed or compared must agree
# on all of these. The other fields say how the network is fed.
NETWORK_FIELDS = ("variant", "model", "num_classes", "width", "depth", "padding", "bn_eps")


def canonical_variant(name):
    """'EfficientNet-B0-SEend@noskip', 'SEEND@NOSKIP', 'seend@noskip' -> 'seend@noskip';
    'noSE@Stage2-7' -> 'nose@stage2-7', 'seend@stage8-8' -> 'seend@stage8'."""
    key = str(name).strip().lower()
    for prefix in ("efficientnet-b0-", "efficiennet-b0-", "efficientnet-b0", "b0-"):
        if key.startswith(prefix):
            key = key[len(prefix):] or "base"
    if key in ("", "efficientnet-b0", "b0"):
        key = "base"
    if key in VARIANTS:
        return key
    match = _STAGE_VARIANT.fullmatch(key)
    if match:
        verb, first = match.group(1), int(match.group(2))
        last = int(match.group(3) or first)
        if FIRST_STAGE <= first <= last <= LAST_STAGE:
            return f"{verb}@stage{first}" + (f"-{last}" if last != first else "")
    raise ValueError(f"unknown variant {name!r}: choose one of {', '.join(VARIANTS)} "
                     "(case-insensitive; the paper's 'EfficientNet-B0-SEend@noskip' spellings work too), "
                     "or one of your own, SE moved to the end or removed in a range of Table I's stages "
                     f"{FIRST_STAGE}..{LAST_STAGE}: seend@stage8, nose@stage2-7, ...")


def variant_rule(variant):
    """(SE position, blocks it applies to) of a variant: blocks are 'noskip', 'hasskip', 'all'
    or a (first, last) range of stages."""
    variant = canonical_variant(variant)
    if variant in VARIANTS:
        return VARIANTS[variant]
    match = _STAGE_VARIANT.fullmatch(variant)
    first = int(match.group(2))
    return _POSITIONS[match.group(1)], (first, int(match.group(3) or first))


def canonical_model(name):
    key = str(name).strip().lower().replace("efficientnet-", "")
    if key not in SCALING:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(SCALING)}")
    return key


def default_resolution(model):
    """The image size a model size was scaled for: b0 224 ... b7 600."""
    return SCALING[canonical_model(model)][2]


def multipliers(model, width=None, depth=None):
    """(width, depth) a network is built with: the model size's own unless overridden."""
    own_width, own_depth = SCALING[canonical_model(model)][:2]
    return (own_width if width is None else width, own_depth if depth is None else depth)


MULTIPLIER_RULE = "must be a finite number above 0"


def valid_multiplier(value):
    """Whether `value` can be a width or depth multiplier (see MULTIPLIER_RULE)."""
    return _is_number(value) and math.isfinite(value) and value > 0


class Feed(NamedTuple):
    """How images are fed to a network: their size, the pixels' normalization, and how a
    photo is cropped and resized for evaluation."""
    resolution: int
    normalization: Normalization
    view: EvalView


@dataclass(frozen=True)
class ModelSpec:
    """A network and how it is fed. Names are made canonical and every field is checked
    when a spec is made: a spec that exists builds."""
    variant: str = "base"
    model: str = "b0"
    num_classes: int = 1000
    width: float = None           # None: the model's own multiplier (SCALING)
    depth: float = None
    padding: str = DEFAULT_PADDING
    bn_eps: float = DEFAULT_BN_EPS
    image_size: int = None        # None: the model's own resolution
    data: str = "default"         # the data spec it was trained on: its kind says how photos are prepared
    normalization: tuple = None   # ((mean R, G, B), (std R, G, B)) of pixels on [0, 1]; None: the data's own
    eval_view: EvalView = None    # how a photo is cropped for eval (converted weights record their library's);
                                  # None: TensorFlow's, the view of networks trained here
    class_names: tuple = None

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)
        put("variant", canonical_variant(self.variant))
        put("model", canonical_model(self.model))
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be a whole number of at least 1, got {self.num_classes!r}")
        for name in ("width", "depth"):
            value = getattr(self, name)
            if value is not None and not valid_multiplier(value):
                raise ValueError(f"{name} {MULTIPLIER_RULE}, got {value!r}")
        if self.padding not in PADDINGS:
            raise ValueError(f"unknown padding {self.padding!r}: choose one of {', '.join(PADDINGS)}")
        if not (_is_number(self.bn_eps) and 0.0 < self.bn_eps < 1.0):
            raise ValueError(f"bn_eps must be a number in (0, 1), got {self.bn_eps!r}")
        put("bn_eps", float(self.bn_eps))
        if self.image_size is not None and not (isinstance(self.image_size, int) and self.image_size > 0):
            raise ValueError(f"image_size must be a positive whole number, got {self.image_size!r}")
        if self.normalization is not None:
            mean, std = (tuple(float(v) for v in part) for part in self.normalization)
            if not (len(mean) == len(std) == 3 and min(std) > 0):
                raise ValueError(f"normalization must be three means and three positive stds, got "
                                 f"{self.normalization!r}")
            put("normalization", (mean, std))
        if self.class_names is not None:
            put("class_names", tuple(str(n) for n in self.class_names))
        if self.eval_view is not None and not isinstance(self.eval_view, EvalView):
            raise ValueError(f"eval_view must be an EvalView (data_tools/eval_view.py), got {self.eval_view!r}")

    # ------------------------------------------------------------ derived facts
    @property
    def multipliers(self):
        """(width, depth) the network is built with: the model's own unless overridden."""
        return multipliers(self.model, self.width, self.depth)

    @property
    def resolution(self):
        """The image size it is fed: its own, else the model's."""
        return self.image_size or default_resolution(self.model)

    def feed(self, data=None):
        """How to feed images of the dataset named `data` (default: the data it was trained on)
        to this network: its resolution, and the normalization and eval view it records (a
        converted published model's, a trained run's) where `data` is of the kind it was
        trained on (photos, or Fashion-MNIST); elsewhere the data's own normalization and
        TensorFlow's view. Every place that feeds a network asks this."""
        data = self.data if data is None else data
        same_kind = data_kind(data) == data_kind(self.data)
        normalization = (Normalization(*self.normalization) if same_kind and self.normalization is not None
                         else NORMALIZATIONS[data_kind(data)])
        view = self.eval_view if same_kind and self.eval_view is not None else TF_VIEW
        return Feed(self.resolution, normalization, view)

    @property
    def default_dropout(self):
        return SCALING[self.model][3]

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ comparisons
    def differences(self, other, fields=NETWORK_FIELDS):
        """[(field, this spec's value, the other's)] where the two differ, in `fields`."""
        return [(f, getattr(self, f), getattr(other, f)) for f in fields if getattr(self, f) != getattr(other, f)]

    def same_backbone(self, other):
        """True when the two networks have the same shapes outside the classifier and the SE
        layers a variant moves: the same width and depth (weights of one start the other)."""
        return self.multipliers == other.multipliers

    def backbone_flags(self):
        """The train flags that build this spec's backbone: '--model b0 --width 0.25 --depth 0.1'."""
        return " ".join([f"--model {self.model}"] + [f"--{f} {getattr(self, f):g}" for f in ("width", "depth")
                                                     if getattr(self, f) is not None])

    # ------------------------------------------------------------ checkpoint metadata
    def to_meta(self):
        """The spec as checkpoint metadata (JSON values); from_meta reads it back."""
        meta = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.normalization is not None:
            meta["normalization"] = dict(mean=list(self.normalization[0]), std=list(self.normalization[1]))
        if self.class_names is not None:
            meta["class_names"] = list(self.class_names)
        if self.eval_view is not None:
            meta["eval_view"] = self.eval_view.to_json()
        return meta

    @classmethod
    def from_meta(cls, meta, source="the checkpoint"):
        """The spec a checkpoint's metadata records. Keys a checkpoint older than them lacks
        take the defaults of their time (padding "same", BN eps 1e-3); a normalization that
        is not three means and stds is left out; an eval view in words (format 3 and before:
        converted weights recorded TensorFlow's view as a sentence) is TensorFlow's view.
        ValueError names `source` and the problem."""
        for key in ("variant", "model", "num_classes"):
            if key not in meta:
                raise ValueError(f"{source} has no {key!r} in its metadata: not a tinyeffnet model checkpoint")
        names = meta.get("class_names")
        try:
            return cls(variant=meta["variant"], model=meta["model"], num_classes=meta["num_classes"],
                       width=meta.get("width"), depth=meta.get("depth"),
                       padding=meta.get("padding") or DEFAULT_PADDING, bn_eps=meta.get("bn_eps") or DEFAULT_BN_EPS,
                       image_size=meta.get("image_size") or None, data=meta.get("data") or "default",
                       normalization=_recorded_normalization(meta.get("normalization")),
                       eval_view=_recorded_view(meta.get("eval_view")),
                       class_names=names if isinstance(names, list) else None)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source} records a network tinyeffnet cannot build: {e}") from None


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _recorded_view(recorded):
    return None if recorded is None else EvalView.from_json(recorded)


def _recorded_normalization(recorded):
    if not isinstance(recorded, dict):
        return None
    try:
        mean, std = tuple(float(v) for v in recorded["mean"]), tuple(float(v) for v in recorded["std"])
    except (KeyError, TypeError, ValueError):
        return None
    return (mean, std) if len(mean) == len(std) == 3 and min(std) > 0 else None
