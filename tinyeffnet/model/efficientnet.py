"""EfficientNet B0-B7 and the paper's seven SE variants, built from a name.

The one place that turns a variant name and a model size into a network:
`build_model("seend@hasskip", model="b0", num_classes=1000)`.

Architecture (the paper's Table I): stem conv 3x3/2 -> 16 MBConv blocks in 7 stages
-> 1x1 conv to 1280 -> global average pool -> dropout -> FC. The paper's variants change
where the squeeze-and-excitation (SE) module sits in some blocks:
  base    SE after the depthwise conv in every block     (Fig. 1b)
  seend@X SE after the project conv + BN in blocks X     (Fig. 1c)
  nose@X  no SE in blocks X                              (Fig. 1a)
where X is `noskip` (blocks without a residual connection), `hasskip` or `all`.
Variants of your own take the same two verbs on a range of Table I's stages (2..8):
`seend@stage8`, `nose@stage2-7` (SE only in the last stage), understood wherever a
variant name is (train, ablation, summary).

What network is built is a ModelSpec (spec.py: the names above, model sizes B0-B7, and
the two options that change arithmetic, not shapes: padding and BN eps); every checkpoint
records it and `build_model(spec)` rebuilds the same network from it.
"""
import math
from dataclasses import dataclass

from backends import get_backend

from ..engine import functional as F
from ..nn import (BatchNorm2d, Conv2d, DepthwiseConv2d, DropConnect, Dropout, Linear, Module,
                 ModuleList, SqueezeExcite, initialize)
from .spec import DEFAULT_BN_EPS, DEFAULT_PADDING, FIRST_STAGE, LAST_STAGE, ModelSpec, canonical_model, \
    canonical_variant, multipliers, variant_rule

# (expand ratio, kernel, stride of the first block, output channels, repeats): stages 2-8
B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
assert LAST_STAGE - FIRST_STAGE + 1 == len(B0_STAGES)

# The paper's Table II: variant -> (#params in millions, top-1 %, top-5 %, block figure)
PAPER_TABLE2 = {
    "base": (5.29, 77.2, 93.4, "Fig. 1b"),
    "seend@noskip": (5.16, 77.1, 93.3, "Fig. 1b+1c"), "seend@hasskip": (4.91, 76.5, 93.2, "Fig. 1b+1c"),
    "seend@all": (4.78, 76.2, 92.9, "Fig. 1c"),
    "nose@noskip": (5.11, 77.1, 93.4, "Fig. 1a+1b"), "nose@hasskip": (4.83, 76.6, 93.0, "Fig. 1a+1b"),
    "nose@all": (4.65, 75.8, 92.7, "Fig. 1a"),
}
SE_RATIO = 0.25
DROP_CONNECT_RATE = 0.2


def round_filters(filters, width):
    """Scale a channel count by `width`, to a multiple of 8, never more than 10% below."""
    if width == 1.0:
        return filters
    f = filters * width
    new = max(8, int(f + 4) // 8 * 8)
    if new < 0.9 * f:
        new += 8
    return int(new)


def round_repeats(repeats, depth):
    return int(math.ceil(depth * repeats))


@dataclass(frozen=True)
class BlockSpec:
    stage: int          # 2..8, as in the paper's Table I
    in_channels: int
    out_channels: int
    expand_ratio: int
    kernel: int
    stride: int
    se_position: str    # "dw" (Fig. 1b), "end" (Fig. 1c) or None (Fig. 1a)
    drop_rate: float

    @property
    def has_skip(self):
        return self.stride == 1 and self.in_channels == self.out_channels


def block_specs(variant="base", model="b0", width=None, depth=None, drop_connect=DROP_CONNECT_RATE):
    """The MBConv blocks of a model, in order, with each block's SE position.

    `width` / `depth` override the model's multipliers (tiny networks for tests and lessons).
    """
    variant, model = canonical_variant(variant), canonical_model(model)
    width, depth = multipliers(model, width, depth)
    position, which = variant_rule(variant)
    raw = []
    cin = round_filters(STEM_CHANNELS, width)
    for stage, (e, k, s, c, r) in enumerate(B0_STAGES, start=2):
        cout = round_filters(c, width)
        for i in range(round_repeats(r, depth)):
            raw.append((stage, cin, cout, e, k, s if i == 0 else 1))
            cin = cout
    specs = []
    for index, (stage, cin, cout, e, k, s) in enumerate(raw):
        skip = s == 1 and cin == cout
        if isinstance(which, tuple):
            changed = which[0] <= stage <= which[1]
        else:
            changed = which == "all" or (which == "hasskip") == skip
        specs.append(BlockSpec(stage, cin, cout, e, k, s, position if changed else "dw",
                               drop_connect * index / len(raw)))
    return specs


class MBConv(Module):
    """Mobile inverted bottleneck: [expand 1x1] -> depthwise kxk -> project 1x1 (+ skip).

    SE sits after the depthwise conv (se_position "dw", Fig. 1b), after the project conv
    and its BN ("end", Fig. 1c; working on the output channels), or nowhere (None, Fig. 1a).
    Its bottleneck is r = max(1, int(in_channels * 0.25)) wherever it sits.
    """

    def __init__(self, spec, bn_momentum=0.99, bn_eps=DEFAULT_BN_EPS, padding=DEFAULT_PADDING, backend=None,
                 dtype=None):
        super().__init__()
        kw = dict(backend=backend, dtype=dtype)
        bn = dict(momentum=bn_momentum, eps=bn_eps, **kw)
        self.spec = spec
        mid = spec.in_channels * spec.expand_ratio
        if spec.expand_ratio != 1:
            self.expand_conv = Conv2d(spec.in_channels, mid, 1, **kw)
            self.bn0 = BatchNorm2d(mid, **bn)
        self.depthwise_conv = DepthwiseConv2d(mid, spec.kernel, spec.stride, padding=padding, **kw)
        self.bn1 = BatchNorm2d(mid, **bn)
        reduced = max(1, int(spec.in_channels * SE_RATIO))
        if spec.se_position == "dw":
            self.se = SqueezeExcite(mid, reduced, **kw)
        self.project_conv = Conv2d(mid, spec.out_channels, 1, **kw)
        self.bn2 = BatchNorm2d(spec.out_channels, **bn)
        if spec.se_position == "end":
            self.se = SqueezeExcite(spec.out_channels, reduced, **kw)
        if spec.has_skip:
            self.drop_connect = DropConnect(spec.drop_rate)

    def forward(self, x, key=None):
        h = x
        if self.spec.expand_ratio != 1:
            h = F.swish(self.bn0(self.expand_conv(h)))
        h = F.swish(self.bn1(self.depthwise_conv(h)))
        if self.spec.se_position == "dw":
            h = self.se(h)
        h = self.bn2(self.project_conv(h))
        if self.spec.se_position == "end":
            h = self.se(h)
        if self.spec.has_skip:
            h = self.drop_connect(h, key) + x
        return h


class EfficientNet(Module):
    """Stem, MBConv blocks, head. `forward(x, key)` maps NHWC images to logits.

    `spec`: the network (a ModelSpec, or a variant name with `model`, `num_classes` and the
    spec's other fields as keywords). The rest are training options, which a checkpoint
    does not need to rebuild the network. In training mode a random `key` drives dropout
    and drop-connect; eval needs none.
    """
    CLASSIFIER = "fc"  # what depends on the class count, and what a frozen backbone still trains

    def __init__(self, spec="base", model=None, num_classes=None, bn_momentum=0.99, dropout=None,
                 drop_connect=DROP_CONNECT_RATE, backend=None, dtype=None, **spec_fields):
        super().__init__()
        backend = get_backend(backend)
        self.spec = spec = as_spec(spec, model, num_classes, **spec_fields)
        width, depth = spec.multipliers
        kw = dict(backend=backend, dtype=dtype)
        bn = dict(momentum=bn_momentum, eps=spec.bn_eps, **kw)
        self.block_specs = block_specs(spec.variant, spec.model, width, depth, drop_connect)
        stem, head = round_filters(STEM_CHANNELS, width), round_filters(HEAD_CHANNELS, width)
        self.stem_conv = Conv2d(3, stem, 3, stride=2, padding=spec.padding, **kw)
        self.stem_bn = BatchNorm2d(stem, **bn)
        self.blocks = ModuleList(MBConv(s, bn_momentum, spec.bn_eps, spec.padding, **kw) for s in self.block_specs)
        self.head_conv = Conv2d(self.block_specs[-1].out_channels, head, 1, **kw)
        self.head_bn = BatchNorm2d(head, **bn)
        self.dropout = Dropout(spec.default_dropout if dropout is None else dropout)
        self.fc = Linear(head, spec.num_classes, **kw)

    @property
    def variant(self):
        return self.spec.variant

    @property
    def model_name(self):
        return self.spec.model

    @property
    def num_classes(self):
        return self.spec.num_classes

    def train_classifier_only(self):
        """Training mode for the classifier (dropout, fc) alone; the backbone runs as at eval
        time: BN normalises with its moving statistics and leaves them as they are, no
        drop-connect. What a frozen backbone (train --freeze-backbone) computes."""
        self.eval()
        for module in (self, self.dropout, self.fc):
            object.__setattr__(module, "training", True)
        return self

    def stem(self, x):
        return F.swish(self.stem_bn(self.stem_conv(x)))

    def head(self, x, key=None):
        x = F.global_avg_pool(F.swish(self.head_bn(self.head_conv(x))))
        return self.fc(self.dropout(x, key))

    def forward(self, x, key=None):
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"EfficientNet expects NHWC RGB images (N, H, W, 3), got shape {x.shape}")
        keys = [None] * (len(self.blocks) + 1)
        if key is not None:
            keys = x.backend.split_key(key, len(self.blocks) + 1)
        x = self.stem(x)
        for block, k in zip(self.blocks, keys):
            x = block(x, k)
        return self.head(x, keys[-1])


# ModelSpec fields build_model and EfficientNet take as keywords beside a variant name
SPEC_FIELDS = tuple(f for f in ModelSpec.__dataclass_fields__ if f not in ("variant", "model", "num_classes"))


def as_spec(spec, model=None, num_classes=None, **fields):
    """`spec` if it is a ModelSpec (then nothing else may be given), else the ModelSpec of the
    variant name `spec` with `model`, `num_classes` and `fields` (width, depth, padding, ...)."""
    if isinstance(spec, ModelSpec):
        given = [k for k, v in dict(model=model, num_classes=num_classes, **fields).items() if v is not None]
        if given:
            raise TypeError(f"a ModelSpec says the whole network: give {', '.join(given)} in the spec")
        return spec
    return ModelSpec(spec, model or "b0", 1000 if num_classes is None else num_classes, **fields)


def build_model(spec="base", model=None, num_classes=None, init="xavier", seed=0, backend="python", dtype=None,
                **options):
    """The one way to make a network: what network (a ModelSpec, as a checkpoint records it, or
    a variant name with `model`, `num_classes`, and `width`/`depth`/`padding`/`bn_eps` among
    `options`), the init scheme and seed; the other `options` are training options
    (bn_momentum, dropout, drop_connect).

    The layers are built on the shape-only meta backend, then every value is made on
    `backend` at once (see tinyeffnet.nn.init.initialize)."""
    spec_fields = {k: options.pop(k) for k in SPEC_FIELDS if k in options}
    spec = as_spec(spec, model, num_classes, **spec_fields)
    target = get_backend(backend)
    net = EfficientNet(spec, backend="meta", dtype=dtype or target.default_float, **options)
    return initialize(net, init, seed, backend=target)

