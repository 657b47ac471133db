"""The published EfficientNet families: their tensor names, and the arithmetic they expect.

    family         architecture (its library)          padding     BN eps          names
    timm           tf_efficientnet_bN (timm)            same        1e-3            conv_stem, blocks.S.I.conv_pw, ...
    timm-pytorch   efficientnet_bN (timm)               symmetric   1e-5            the same names as timm
    torchvision    efficientnet_bN (torchvision)        symmetric   1e-5 (b0-b4),   features.S.I.block.J.0, ...
                                                                    1e-3 (b5-b7)

Each library evaluates its weights its own way (`eval_view(model)`: the EvalView and the
resolution, when no hub config.json says otherwise): timm and torchvision resize the short
side to size / crop_pct and take the center crop (timm's resolution and crop_pct per model
from its default pretrained configs, bicubic; torchvision's IMAGENET1K_V1 presets); TensorFlow's crop of
size / (size + 32) of the short side, then resize, is tinyeffnet's own view.

timm's tf_ models are the TensorFlow-trained weights of the EfficientNet authors, ported:
TensorFlow's SAME padding and BN eps 1e-3, exactly tinyeffnet's defaults. timm's own
efficientnet_bN and torchvision's were trained (or, for torchvision b5-b7, re-exported)
in PyTorch, whose convolutions pad kernel // 2 on every side, and whose BatchNorm2d
defaults to eps 1e-5. A family's name map is written against tinyeffnet's base network
(SE after the depthwise conv in every block): `name_map(specs)` lists, in network order,
(our name, their name, layout kind) for every tensor, plus the names of the tensors they
have and tinyeffnet does not model (each BN's num_batches_tracked, an int64 counter).
"""
import re
from typing import Callable, NamedTuple

from data_tools.eval_view import EvalView

BN_FIELDS = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"), ("moving_var", "running_var"))
UNMODELLED_BN = "num_batches_tracked"
RESOLUTIONS = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528, "b7": 600}
# timm's pretrained configs of tf_efficientnet_bN (every tag: ns_jft_in1k, aa_in1k, ap_in1k, ...), bicubic
TIMM_TF_CROP_PCT = {"b0": 0.875, "b1": 0.882, "b2": 0.890, "b3": 0.904, "b4": 0.922, "b5": 0.934, "b6": 0.942,
                    "b7": 0.949}
# timm's default pretrained configs of efficientnet_bN (the default tag's): (resolution, crop_pct, crop mode), bicubic
TIMM_PT_DEFAULTS = {"b0": (224, 0.875, "resize-crop"), "b1": (240, 0.9, "resize-crop"),
                    "b2": (256, 0.875, "resize-crop"), "b3": (288, 0.875, "resize-crop"),
                    "b4": (320, 0.875, "resize-crop"), "b5": (448, 1.0, "squash-crop"),
                    "b6": (528, 0.942, "resize-crop"), "b7": (600, 0.949, "resize-crop")}
# torchvision's EfficientNet_BN_Weights.IMAGENET1K_V1 presets: (crop size, resize size, interpolation)
TORCHVISION_PRESETS = {"b0": (224, 256, "bicubic"), "b1": (240, 256, "bicubic"), "b2": (288, 288, "bicubic"),
                       "b3": (300, 320, "bicubic"), "b4": (380, 384, "bicubic"), "b5": (456, 456, "bicubic"),
                       "b6": (528, 528, "bicubic"), "b7": (600, 600, "bicubic")}


class Family(NamedTuple):
    name: str
    library: str
    prefix: str                 # architecture = prefix + model, e.g. "tf_efficientnet_" + "b0"
    padding: str
    bn_eps: Callable            # model ("b0".."b7") -> eps
    names: Callable             # specs -> NameMap
    eval_view: Callable         # model -> (EvalView, image size): how the library evaluates its weights

    def architecture(self, model):
        return self.prefix + model


class NameMap(NamedTuple):
    pairs: list                 # [(our name, their name, "conv" | "dense" | "vector")], network order
    unmodelled: list            # their names that tinyeffnet keeps aside (BN counters)


class _Builder:
    def __init__(self):
        self.pairs, self.unmodelled = [], []

    def conv(self, ours, theirs, bias=False):
        self.pairs.append((f"{ours}.weight", f"{theirs}.weight", "conv"))
        if bias:
            self.pairs.append((f"{ours}.bias", f"{theirs}.bias", "vector"))

    def bn(self, ours, theirs):
        self.pairs.extend((f"{ours}.{a}", f"{theirs}.{b}", "vector") for a, b in BN_FIELDS)
        self.unmodelled.append(f"{theirs}.{UNMODELLED_BN}")

    def dense(self, ours, theirs):
        self.pairs.extend([(f"{ours}.weight", f"{theirs}.weight", "dense"),
                           (f"{ours}.bias", f"{theirs}.bias", "vector")])

    def result(self):
        return NameMap(self.pairs, self.unmodelled)


def _stage_positions(specs):
    """(block index, stage, index within the stage) for every block."""
    seen = {}
    for index, spec in enumerate(specs):
        yield index, spec, seen.setdefault(spec.stage, 0)
        seen[spec.stage] += 1


def timm_names(specs):
    """timm's EfficientNet: stem, blocks.<stage - 2>.<i> (DepthwiseSeparable for expand ratio
    1: conv_dw bn1 se conv_pw bn2; InvertedResidual: conv_pw bn1 conv_dw bn2 se conv_pwl bn3),
    conv_head, bn2, classifier."""
    m = _Builder()
    m.conv("stem_conv", "conv_stem")
    m.bn("stem_bn", "bn1")
    for index, spec, i in _stage_positions(specs):
        ours, theirs = f"blocks.{index}", f"blocks.{spec.stage - 2}.{i}"
        if spec.expand_ratio == 1:
            m.conv(f"{ours}.depthwise_conv", f"{theirs}.conv_dw")
            m.bn(f"{ours}.bn1", f"{theirs}.bn1")
            _se(m, ours, f"{theirs}.se", "conv_reduce", "conv_expand")
            m.conv(f"{ours}.project_conv", f"{theirs}.conv_pw")
            m.bn(f"{ours}.bn2", f"{theirs}.bn2")
        else:
            m.conv(f"{ours}.expand_conv", f"{theirs}.conv_pw")
            m.bn(f"{ours}.bn0", f"{theirs}.bn1")
            m.conv(f"{ours}.depthwise_conv", f"{theirs}.conv_dw")
            m.bn(f"{ours}.bn1", f"{theirs}.bn2")
            _se(m, ours, f"{theirs}.se", "conv_reduce", "conv_expand")
            m.conv(f"{ours}.project_conv", f"{theirs}.conv_pwl")
            m.bn(f"{ours}.bn2", f"{theirs}.bn3")
    m.conv("head_conv", "conv_head")
    m.bn("head_bn", "bn2")
    m.dense("fc", "classifier")
    return m.result()


def torchvision_names(specs):
    """torchvision's EfficientNet: features.0 (stem conv, BN), features.<stage - 1>.<i>.block.<j>
    (j: [expand], depthwise, SE (fc1, fc2), project; each a conv at .0 and its BN at .1),
    features.<last stage + 1> (head conv, BN), classifier.1 (after the dropout)."""
    m = _Builder()
    m.conv("stem_conv", "features.0.0")
    m.bn("stem_bn", "features.0.1")
    for index, spec, i in _stage_positions(specs):
        ours, theirs = f"blocks.{index}", f"features.{spec.stage - 1}.{i}.block"
        j = 0
        if spec.expand_ratio != 1:
            m.conv(f"{ours}.expand_conv", f"{theirs}.0.0")
            m.bn(f"{ours}.bn0", f"{theirs}.0.1")
            j = 1
        m.conv(f"{ours}.depthwise_conv", f"{theirs}.{j}.0")
        m.bn(f"{ours}.bn1", f"{theirs}.{j}.1")
        _se(m, ours, f"{theirs}.{j + 1}", "fc1", "fc2")
        m.conv(f"{ours}.project_conv", f"{theirs}.{j + 2}.0")
        m.bn(f"{ours}.bn2", f"{theirs}.{j + 2}.1")
    head = f"features.{max(s.stage for s in specs)}"
    m.conv("head_conv", f"{head}.0")
    m.bn("head_bn", f"{head}.1")
    m.dense("fc", "classifier.1")
    return m.result()


def _se(m, ours, theirs, reduce, expand):
    m.conv(f"{ours}.se.reduce", f"{theirs}.{reduce}", bias=True)
    m.conv(f"{ours}.se.expand", f"{theirs}.{expand}", bias=True)


def _timm_tf_view(model):
    return EvalView("resize-crop", TIMM_TF_CROP_PCT[model], "bicubic"), RESOLUTIONS[model]


def _timm_view(model):
    size, crop_pct, mode = TIMM_PT_DEFAULTS[model]
    return EvalView(mode, crop_pct, "bicubic"), size


def _torchvision_view(model):
    crop, resize, interpolation = TORCHVISION_PRESETS[model]
    return EvalView("resize-crop", crop / resize, interpolation), crop


FAMILIES = {
    "timm": Family("timm", "timm", "tf_efficientnet_", "same", lambda model: 1e-3, timm_names, _timm_tf_view),
    "timm-pytorch": Family("timm-pytorch", "timm", "efficientnet_", "symmetric", lambda model: 1e-5, timm_names,
                           _timm_view),
    "torchvision": Family("torchvision", "torchvision", "efficientnet_", "symmetric",
                          lambda model: 1e-3 if model in ("b5", "b6", "b7") else 1e-5, torchvision_names,
                          _torchvision_view),
}


def family_of_architecture(architecture):
    """The family whose timm architecture name this is ('tf_efficientnet_b3' -> timm), or None."""
    for family in ("timm", "timm-pytorch"):
        prefix = FAMILIES[family].prefix
        if architecture.startswith(prefix) and architecture[len(prefix):] in [f"b{i}" for i in range(8)]:
            return FAMILIES[family]
    return None


def family_for_options(library, padding, bn_eps, model):
    """The family of `library` ('timm' or 'torchvision') that computes as a checkpoint with
    these options does, or None."""
    for family in FAMILIES.values():
        if family.library == library and family.padding == padding and family.bn_eps(model) == bn_eps:
            return family
    return None


# where a library names block <i> of stage <s>: (pattern, the stage index of Table I's stage 2)
_BLOCK_NAMES = {"timm": (re.compile(r"blocks\.(\d+)\.(\d+)\."), 0),
                "torchvision": (re.compile(r"features\.(\d+)\.(\d+)\.block\."), 1)}


def blocks_per_stage(library, names):
    """How many MBConv blocks each of the 7 stages has in a state dict with these names
    (what a network's depth multiplier decides)."""
    pattern, first = _BLOCK_NAMES[library]
    blocks = {(int(m.group(1)), int(m.group(2))) for name in names if (m := pattern.match(name))}
    return [len({i for s, i in blocks if s == stage}) for stage in range(first, first + 7)]
