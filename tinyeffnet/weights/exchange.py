"""Published EfficientNet weights in and out: timm's or torchvision's state dict <-> a tinyeffnet checkpoint.

    import_weights(src, family, model=...)   -> Imported(records, meta, transfer)   convert --from
    export_weights(checkpoint, library)      -> Exported(records, metadata, ...)     convert --to

Import checks the file tensor by tensor, in network order, against the network it must
be (the model's widths and depths, or --width/--depth; the class count is the
classifier's), and refuses it at the first tensor that is missing, has another shape or
dtype, and at any tensor it does not know, saying which model the file would fit. Bytes
are moved, never converted (layout.py): timm -> tinyeffnet -> timm gives back every tensor
bit for bit. What tinyeffnet does not model (each BN's num_batches_tracked, an int64) and
the file's own metadata travel verbatim in the checkpoint's metadata.

The checkpoint written is an ordinary one (tinyeffnet.training.checkpoint, names of
tinyeffnet.training.state) whose metadata says how to rebuild and feed the network:
padding and BN eps of the family, image size, eval view (how the weights' own library
crops and resizes a photo: the hub config.json's pretrained_cfg, else the family's
default, or TensorFlow's with eval_view="tf"), ImageNet's class names and normalization.
"""
import hashlib
import json
import os
from array import array
from typing import NamedTuple

from data_tools.eval_view import TF_VIEW, EvalView
from data_tools.imagenet import NUM_CLASSES as IMAGENET_CLASSES
from data_tools.imagenet import imagenet_class_names
from data_tools.pixels import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD

from ..model import SCALING, ModelSpec, block_specs, build_model, canonical_model, default_resolution
from ..training.checkpoint import META_KEY, read_records
from ..training.state import holds_ema, model_tensors, model_weights
from .families import FAMILIES, blocks_per_stage, family_for_options, family_of_architecture
from .files import Record, WeightsError, read_state_dict
from .layout import LAYOUTS
from ..nn.transfer import match

NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "inception": (INCEPTION_MEAN, INCEPTION_STD)}
HUB_CONFIG = "config.json"  # the Hugging Face hub keeps a timm model's config beside model.safetensors
EVAL_VIEWS = ("library", "tf")  # the weights' own library's eval view, or TensorFlow's
# timm's data config when a pretrained_cfg leaves a key out (timm.data.resolve_data_config)
TIMM_CFG_DEFAULTS = dict(crop_pct=0.875, interpolation="bilinear", crop_mode="center")
_TIMM_CROP_MODES = {"center": "resize-crop", "squash": "squash-crop"}
_OURS = {"F32": "float32", "F64": "float64"}  # float dtypes a checkpoint keeps as they are
MODELS = tuple(SCALING)


class Imported(NamedTuple):
    records: dict        # checkpoint name -> (dtype, shape, raw bytes)
    meta: dict
    transfer: object     # tinyeffnet.nn.transfer.Transfer for --variant other than base, else None
    hub_config: dict     # the hub's config.json beside the file (what said the model), or None


class Exported(NamedTuple):
    records: dict        # their name -> Record
    metadata: dict       # the safetensors __metadata__
    architecture: str
    how_to_load: str


# --------------------------------------------------------------------- import
def import_weights(src, family="timm", *, model=None, width=None, depth=None, variant="base", normalization=None,
                   image_size=None, init="xavier", seed=0, eval_view="library"):
    """Read a published state dict and make the records and metadata of a tinyeffnet checkpoint.
    `eval_view`: "library" (how the weights' library evaluates them) or "tf" (TensorFlow's)."""
    family = _family(family)
    theirs, file_metadata = read_state_dict(src)
    if META_KEY in (file_metadata or {}):
        raise WeightsError(f"{src} is a tinyeffnet checkpoint already: evaluate, predict and train --init-from "
                           "take it as it is (convert --to timm or --to torchvision writes it the other way)")
    config = hub_config(src) if family.library == "timm" else None
    model = _choose_model(src, model, config, family)
    problem = _mismatch(theirs, family, model, width, depth)
    if problem:
        raise WeightsError(f"{src}{problem}; {_hint(theirs, family, model, width, depth)}")
    names = family.names(block_specs("base", model, width, depth))
    num_classes = theirs[_their_name(names, "fc.weight")].shape[0]
    mean, std = _normalization(src, normalization, config)
    view, view_size = _eval_view(src, eval_view, config, family, model)
    # what evaluate and predict feed it: photos (data "imagenet"), this view, this mean/std
    spec = ModelSpec(variant, model, num_classes, width, depth, family.padding, family.bn_eps(model),
                     image_size=int(image_size or _config_size(config) or view_size or default_resolution(model)),
                     data="imagenet", normalization=(mean, std), eval_view=view,
                     class_names=imagenet_class_names() if num_classes == IMAGENET_CLASSES else None)
    buffers = {n for n, _ in build_model(spec.replace(variant="base"), backend="meta").named_buffers()}
    converted = {ours: LAYOUTS[kind][0](theirs[their]) for ours, their, kind in names.pairs}
    transfer = None
    if spec.variant != "base":
        converted, transfer = _as_variant(converted, spec, init, seed)
    # BN moving statistics are the buffers, under the same names in every variant.
    records = model_tensors({n: (_OURS[r.dtype], r.shape, r.raw) for n, r in converted.items()}, buffers)
    meta = dict(spec.to_meta(),
                source=dict(family=family.name, library=family.library, architecture=family.architecture(model),
                            file=os.path.basename(src), sha256=_sha256(src)),
                unmodelled={n: [theirs[n].dtype, list(theirs[n].shape), theirs[n].raw.hex()]
                            for n in names.unmodelled if n in theirs},
                source_metadata=file_metadata, step=0)
    if transfer is not None:
        meta.update(initialised=[name for name, _, _ in transfer.fresh], dropped=list(transfer.unused))
    return Imported(records, meta, transfer, config)


def _family(name):
    if name not in FAMILIES:
        raise WeightsError(f"unknown family {name!r}: choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def hub_config(src):
    """The Hugging Face hub's config.json beside `src` (a dict naming a timm architecture and
    its pretrained_cfg: mean, std, input size), or None when there is none."""
    path = os.path.join(os.path.dirname(os.path.abspath(src)), HUB_CONFIG)
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and isinstance(config.get("architecture"), str) else None


def _choose_model(src, model, config, family):
    """--model, else the one the hub config names, else b0; a config that names another
    family or model than asked is refused (its padding or shapes would be wrong)."""
    named = config["architecture"] if config else None
    if named is not None:
        theirs = family_of_architecture(named)
        if theirs is None:
            raise WeightsError(f"{src}: its {HUB_CONFIG} says {named}, not one of the EfficientNet-B0..B7 "
                               "tinyeffnet builds (tf_efficientnet_bN, efficientnet_bN)")
        if theirs.name != family.name:
            raise WeightsError(f"{src}: its {HUB_CONFIG} says {named}, which is --from {theirs.name}, not "
                               f"--from {family.name} ({family.architecture('bN')}): convert with --from {theirs.name}")
        if model is not None and family.architecture(_canonical_model(model)) != named:
            raise WeightsError(f"{src}: its {HUB_CONFIG} says {named}, but --model is {model}: drop --model")
        return named[len(theirs.prefix):]
    return _canonical_model(model or "b0")


def _canonical_model(model):
    try:
        return canonical_model(model)
    except ValueError as e:
        raise WeightsError(str(e)) from None


def _normalization(src, name, config):
    if name is not None:
        if name not in NORMALIZATIONS:
            raise WeightsError(f"unknown normalization {name!r}: choose one of {', '.join(NORMALIZATIONS)}")
        return NORMALIZATIONS[name]
    cfg = (config or {}).get("pretrained_cfg") or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if _three_numbers(mean) and _three_numbers(std) and min(std) > 0:
        return tuple(mean), tuple(std)
    return NORMALIZATIONS["imagenet"]


def _eval_view(src, choice, config, family, model):
    """(EvalView, its resolution or None): TensorFlow's, the hub config's pretrained_cfg
    (crop_pct, interpolation, crop_mode, with timm's defaults for what it leaves out), else
    the family's own."""
    if choice not in EVAL_VIEWS:
        raise WeightsError(f"unknown eval view {choice!r}: choose one of {', '.join(EVAL_VIEWS)}")
    if choice == "tf":
        return TF_VIEW, None
    cfg = (config or {}).get("pretrained_cfg")
    if not isinstance(cfg, dict):
        return family.eval_view(model)
    try:
        return pretrained_cfg_view(cfg), None
    except ValueError as e:
        raise WeightsError(f"{src}: its {HUB_CONFIG}'s pretrained_cfg: {e}; convert with --eval-view tf") from None


def pretrained_cfg_view(cfg):
    """The EvalView of a timm pretrained_cfg (or data config): crop_mode "center" is resize-crop,
    "squash" squash-crop; crop_pct and interpolation as given, timm's defaults for what it
    leaves out. ValueError for what tinyeffnet does not reproduce (crop_mode "border")."""
    got = {key: cfg.get(key) if cfg.get(key) is not None else default for key, default in TIMM_CFG_DEFAULTS.items()}
    if got["crop_mode"] not in _TIMM_CROP_MODES:
        raise ValueError(f"crop_mode {got['crop_mode']!r} is not one tinyeffnet reproduces "
                         f"({' or '.join(_TIMM_CROP_MODES)})")
    return EvalView(_TIMM_CROP_MODES[got["crop_mode"]], got["crop_pct"], got["interpolation"])


def _three_numbers(values):
    return isinstance(values, list) and len(values) == 3 and all(isinstance(v, (int, float)) for v in values)


def _config_size(config):
    size = ((config or {}).get("pretrained_cfg") or {}).get("input_size")
    return size[-1] if isinstance(size, list) and len(size) == 3 and isinstance(size[-1], int) else None


def _their_name(names, ours):
    return next(their for mine, their, _ in names.pairs if mine == ours)


def _mismatch(theirs, family, model, width, depth):
    """None if the file is exactly this network, else the first difference (a phrase that
    follows the file's name)."""
    names = family.names(block_specs("base", model, width, depth))
    fc = _their_name(names, "fc.weight")
    num_classes = theirs[fc].shape[0] if fc in theirs and len(theirs[fc].shape) == 2 else IMAGENET_CLASSES
    shapes = {n: t.shape for n, t in build_model("base", model, num_classes, backend="meta", width=width,
                                                  depth=depth).state_dict().items()}
    network = _describe_network(family, model, width, depth)
    for ours, their, kind in names.pairs:
        record = theirs.get(their)
        want = LAYOUTS[kind][2](shapes[ours])
        if record is None:
            return f" lacks {their} ({network} has it, shape {list(want)}: tinyeffnet's {ours})"
        if record.shape != want:
            return f": {their} has shape {list(record.shape)}, but {network} has {list(want)} there"
        if record.dtype not in _OURS:
            return (f": {their} is {record.dtype}; tinyeffnet imports float32 or float64 weights (save the state "
                    "dict as float32)")
    known = {their for _, their, _ in names.pairs} | set(names.unmodelled)
    extra = sorted((n for n in theirs if n not in known), key=_network_order)
    if extra:
        return f" holds {extra[0]}, which {network} does not have ({len(extra)} such tensors)"
    return None


def _network_order(name):
    """'blocks.10.0.conv_dw.weight' after 'blocks.2.0...': numbers compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in name.split(".")]


def _describe_network(family, model, width, depth):
    reduced = ", ".join(f"{k} {v}" for k, v in (("width", width), ("depth", depth)) if v is not None)
    return f"{family.architecture(model)}" + (f" ({reduced})" if reduced else "")


def _hint(theirs, family, model, width, depth):
    """Which --from / --model the file does fit, if any (at the same --width / --depth)."""
    for candidate in [family] + [f for f in FAMILIES.values() if f.library != family.library]:
        for other in MODELS:
            if (candidate, other) == (family, model) or _mismatch(theirs, candidate, other, width, depth) is not None:
                continue
            if candidate is family:
                return f"the file fits {candidate.architecture(other)}: convert with --model {other}"
            if candidate.library == "timm":  # the two timm families share their names: the file cannot tell
                return (f"its names are timm's ({other}): convert with --from timm (tf_efficientnet_{other}) or "
                        f"--from timm-pytorch (efficientnet_{other}) --model {other}")
            return f"its names are torchvision's: convert with --from torchvision --model {other}"
    stem = family.names(block_specs("base", model, width, depth)).pairs[0][1]  # the first conv's weight
    if stem in theirs and len(theirs[stem].shape) == 4:
        reference = block_specs("base", model)
        own = [sum(s.stage == stage for s in reference) for stage in range(2, 9)]
        return (f"its stem has {theirs[stem].shape[0]} channels and its stages {_counts(blocks_per_stage(family.library, theirs))} "
                f"blocks ({family.architecture(model)}: {reference[0].in_channels} and {_counts(own)}): for a reduced "
                "network give its --width and --depth, else check --from and --model")
    return "not a state dict of this model: check --from, --model and, for a reduced network, --width and --depth"


def _counts(values):
    return "/".join(str(v) for v in values)


def _as_variant(converted, spec, init, seed):
    """The base network's records moved onto the variant of `spec`: what fits by name and
    shape, the rest initialised afresh (init scheme, seed), and what has no place dropped."""
    target = build_model(spec, init=init, seed=seed, backend="python")
    wanted = {n: t.shape for n, t in target.state_dict().items()}
    transfer = match(wanted, {n: r.shape for n, r in converted.items()})
    out = {n: converted[n] for n in transfer.taken}
    dtype = next(iter(converted.values())).dtype
    for name, shape, _ in transfer.fresh:
        values = target.state_dict()[name].to_flat()
        out[name] = Record(dtype, shape, array("f" if dtype == "F32" else "d", values).tobytes())
    return {n: out[n] for n in wanted}, transfer


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------- export
def export_weights(checkpoint, library="timm", use_ema=False):
    """A tinyeffnet checkpoint (base variant) as a state dict with `library`'s names and layouts."""
    records, meta = read_records(checkpoint)
    try:
        spec = ModelSpec.from_meta(meta, checkpoint)
    except ValueError as e:
        raise WeightsError(str(e)) from None
    if spec.variant != "base":
        raise WeightsError(f"{checkpoint} is the variant {spec.variant}; {library} has EfficientNet's base network "
                           "only (SE after the depthwise conv in every block): export a base checkpoint")
    model, width, depth, padding, bn_eps = spec.model, spec.width, spec.depth, spec.padding, spec.bn_eps
    family = _export_family(checkpoint, library, model, padding, bn_eps)
    names = family.names(block_specs("base", model, width, depth))
    if use_ema and not holds_ema(records):
        raise WeightsError(f"{checkpoint} holds no EMA weights (the run had --ema-decay 0): drop --ema")
    weights = model_weights(records, ema=use_ema)
    head = weights.get("head_conv.weight")
    if family.library == "torchvision" and head is not None and head[1][3] != 4 * head[1][2]:
        # torchvision widens the head to 4x the last stage; timm rounds 1280 x width on its own
        raise WeightsError(f"{checkpoint}: its head conv has {head[1][3]} channels, torchvision's network of this "
                           f"width has {4 * head[1][2]}: export with --to timm")
    out = {}
    for ours, their, kind in names.pairs:
        if ours not in weights:
            raise WeightsError(f"{checkpoint} lacks {'EMA weight' if use_ema else 'weight'} {ours}: not a checkpoint "
                               f"of {_describe_network(family, model, width, depth)}")
        dtype, shape, raw = weights[ours]
        out[their] = LAYOUTS[kind][1](Record("F32", tuple(shape), _as_float32(dtype, raw)))
    same_source = (meta.get("source") or {}).get("family") == family.name
    kept = meta.get("unmodelled") if same_source else None
    for name in names.unmodelled:
        if kept is not None:
            if name in kept:
                dtype, shape, hex_bytes = kept[name]
                out[name] = Record(dtype, tuple(shape), bytes.fromhex(hex_bytes))
        else:  # what PyTorch's BatchNorm2d counts; a state dict always holds it
            out[name] = Record("I64", (), bytes(8))
    metadata = meta.get("source_metadata") if same_source else {"format": "pt"}
    return Exported(out, metadata, family.architecture(model), _how_to_load(family, spec))


def _as_float32(dtype, raw):
    if dtype == "float32":
        return raw
    if dtype == "float64":  # a pure-Python run's checkpoint: PyTorch models are float32
        wide = array("d")
        wide.frombytes(raw)
        return array("f", wide).tobytes()
    raise WeightsError(f"cannot export a {dtype} tensor as a weight")


def _export_family(checkpoint, library, model, padding, bn_eps):
    if library not in ("timm", "torchvision"):
        raise WeightsError(f"unknown library {library!r}: choose timm or torchvision")
    family = family_for_options(library, padding, bn_eps, model)
    if family is not None:
        return family
    if library == "timm":  # timm builds either padding with any eps (bn_eps=, pad_type=)
        return FAMILIES["timm" if padding == "same" else "timm-pytorch"]
    want = FAMILIES["torchvision"]
    raise WeightsError(f"{checkpoint} computes with {padding} padding and BN eps {bn_eps}; torchvision's "
                       f"{want.architecture(model)} uses {want.padding} padding and eps {want.bn_eps(model)}, so it "
                       "would give other logits: export with --to timm (its models take both settings)")


def _how_to_load(family, spec):
    """The library's line that builds the network of `spec` (a state dict of `family` loads into it)."""
    arch, num_classes = family.architecture(spec.model), spec.num_classes
    reduced = spec.width is not None or spec.depth is not None
    width, depth = spec.multipliers
    if family.library == "torchvision":
        if not reduced:
            return f"torchvision.models.{arch}(num_classes={num_classes})"
        return (f"torchvision.models.efficientnet.EfficientNet(torchvision.models.efficientnet._efficientnet_conf("
                f"'{arch}', width_mult={width}, depth_mult={depth})[0], dropout={spec.default_dropout}, "
                f"num_classes={num_classes})")
    if not reduced:
        options = f", bn_eps={spec.bn_eps}" if spec.bn_eps != family.bn_eps(spec.model) else ""
        return f"timm.create_model('{arch}', num_classes={num_classes}{options})"
    pad_type = "same" if spec.padding == "same" else ""
    return (f"timm.models.efficientnet._gen_efficientnet('{arch}', channel_multiplier={width}, "
            f"depth_multiplier={depth}, num_classes={num_classes}, bn_eps={spec.bn_eps}, pad_type='{pad_type}')")
