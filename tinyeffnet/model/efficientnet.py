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

Two options change arithmetic, not shapes, and are recorded in every checkpoint
(`model_options`): `padding` ("same", TensorFlow's, the default and what the TF-trained
weights expect; "symmetric", what PyTorch-trained weights expect) and `bn_eps` (1e-3,
TensorFlow's; PyTorch's BatchNorm2d uses 1e-5). Weights trained with one setting give
other logits with the other (tinyeffnet/weights says which published files use which).
"""
import math
import re
from dataclasses import dataclass

from backends import get_backend

from ..engine import functional as F
from ..nn import (PADDINGS, BatchNorm2d, Conv2d, DepthwiseConv2d, DropConnect, Dropout, Linear, Module,
                 ModuleList, SqueezeExcite, initialize)

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
DEFAULT_PADDING, DEFAULT_BN_EPS = "same", 1e-3  # TensorFlow's: what the paper's network used
FIRST_STAGE, LAST_STAGE = 2, 1 + len(B0_STAGES)  # the MBConv stages of Table I
_STAGE_VARIANT = re.compile(r"(seend|nose)@stage(\d+)(?:-(\d+))?")
_POSITIONS = {"seend": "end", "nose": None}


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
    width = SCALING[model][0] if width is None else width
    depth = SCALING[model][1] if depth is None else depth
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

    In training mode a random `key` drives dropout and drop-connect; eval needs none.
    """
    CLASSIFIER = "fc"  # what depends on the class count, and what a frozen backbone still trains

    def __init__(self, variant="base", model="b0", num_classes=1000, bn_momentum=0.99, bn_eps=DEFAULT_BN_EPS,
                 dropout=None, drop_connect=DROP_CONNECT_RATE, width=None, depth=None, padding=DEFAULT_PADDING,
                 backend=None, dtype=None):
        super().__init__()
        backend = get_backend(backend)
        self.variant, self.model_name = canonical_variant(variant), canonical_model(model)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if padding not in PADDINGS:
            raise ValueError(f"unknown padding {padding!r}: choose one of {', '.join(PADDINGS)}")
        if not (isinstance(bn_eps, (int, float)) and 0.0 < bn_eps < 1.0):
            raise ValueError(f"bn_eps must be a number in (0, 1), got {bn_eps!r}")
        self.num_classes = int(num_classes)
        self.padding, self.bn_eps = padding, float(bn_eps)
        self.width, self.depth = width, depth
        model_width, _, self.default_image_size, default_dropout = SCALING[self.model_name]
        width = model_width if width is None else width
        kw = dict(backend=backend, dtype=dtype)
        bn = dict(momentum=bn_momentum, eps=bn_eps, **kw)
        self.specs = block_specs(self.variant, self.model_name, width, depth, drop_connect)
        stem, head = round_filters(STEM_CHANNELS, width), round_filters(HEAD_CHANNELS, width)
        self.stem_conv = Conv2d(3, stem, 3, stride=2, padding=padding, **kw)
        self.stem_bn = BatchNorm2d(stem, **bn)
        self.blocks = ModuleList(MBConv(s, bn_momentum, bn_eps, padding, **kw) for s in self.specs)
        self.head_conv = Conv2d(self.specs[-1].out_channels, head, 1, **kw)
        self.head_bn = BatchNorm2d(head, **bn)
        self.dropout = Dropout(default_dropout if dropout is None else dropout)
        self.fc = Linear(head, self.num_classes, **kw)

    def model_options(self):
        """What rebuilds this network's shapes and arithmetic: recorded in every checkpoint
        (tinyeffnet.training.state.load_model passes it back to build_model)."""
        return dict(variant=self.variant, model=self.model_name, num_classes=self.num_classes, width=self.width,
                    depth=self.depth, padding=self.padding, bn_eps=self.bn_eps)

    def set_bn_momentum(self, momentum):
        for _, m in self.named_modules():
            if isinstance(m, BatchNorm2d):
                m.momentum = momentum

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


def build_model(variant="base", model="b0", num_classes=1000, init="xavier", seed=0, backend="python",
                dtype=None, **options):
    """The one way to make a network: variant name, model size, classes, init scheme, seed.

    The layers are built on the shape-only meta backend, then every value is made on
    `backend` at once (see tinyeffnet.nn.init.initialize)."""
    target = get_backend(backend)
    net = EfficientNet(variant, model, num_classes, backend="meta", dtype=dtype or target.default_float, **options)
    return initialize(net, init, seed, backend=target)
