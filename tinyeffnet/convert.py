"""`python -m tinyeffnet.convert --from timm SRC.safetensors --out DST.safetensors`: published weights in and out.

    --from timm SRC           timm's tf_efficientnet_bN state dict (the TensorFlow-trained weights)
    --from timm-pytorch SRC   timm's efficientnet_bN (PyTorch-trained: symmetric padding, BN eps 1e-5)
    --from torchvision SRC    torchvision's efficientnet_bN
    --to timm CKPT            a tinyeffnet checkpoint (base variant) as a timm state dict
    --to torchvision CKPT     ... as a torchvision state dict

The result of --from is a tinyeffnet checkpoint that evaluate, predict and train
--init-from load; the result of --to loads into the library's model with
load_state_dict(safetensors.torch.load_file(DST)), and the command prints how to build
that model. Nothing is written unless the whole conversion succeeds.
"""
import os
import sys

from ._cli import ArgumentParser, run_command
from ._files import WriteError
from .model import MULTIPLIER_RULE, ModelSpec, canonical_variant, valid_multiplier
from .nn import INIT_SCHEMES
from .training.checkpoint import CheckpointError, write_checkpoint_file
from .weights.exchange import EVAL_VIEWS, NORMALIZATIONS, export_weights, import_weights
from .weights.families import FAMILIES
from .weights.files import WeightsError, write_state_dict

HUB_WEIGHTS = "model.safetensors"  # the weights file of a Hugging Face hub model folder
IMPORT_ONLY = ("model", "width", "depth", "variant", "normalization", "image_size", "eval_view", "init", "seed")


def build_parser():
    p = ArgumentParser(prog="python -m tinyeffnet.convert", description=__doc__.split("\n\n")[0])
    direction = p.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="source", choices=tuple(FAMILIES),
                           help="read a published state dict: timm (tf_efficientnet_bN), timm-pytorch "
                                "(efficientnet_bN) or torchvision (efficientnet_bN)")
    direction.add_argument("--to", dest="target", choices=("timm", "torchvision"),
                           help="write a tinyeffnet checkpoint as a timm or torchvision state dict")
    p.add_argument("path", metavar="SRC", help="the .safetensors file to read (or a hub model folder holding "
                                               "model.safetensors; with --to a checkpoint or a work dir)")
    p.add_argument("--out", required=True, metavar="DST", help="the .safetensors file to write")
    p.add_argument("--model", default=None,
                   help="b0 .. b7 (default: what the hub's config.json beside SRC names, else b0)")
    p.add_argument("--width", type=float, default=None, help="width multiplier of a reduced network")
    p.add_argument("--depth", type=float, default=None, help="depth multiplier of a reduced network")
    p.add_argument("--variant", default="base",
                   help="the tinyeffnet variant to make (default base: one to one); other variants take every "
                        "tensor whose name and shape fit and initialise the rest afresh")
    p.add_argument("--normalization", choices=tuple(NORMALIZATIONS), default=None,
                   help="the mean/std the weights were trained with (default: the hub config.json's, else "
                        "imagenet; AdvProp '.ap' weights use inception)")
    p.add_argument("--image-size", type=int, default=None,
                   help="resolution predict and evaluate use (default: the model's, e.g. 224 for b0)")
    p.add_argument("--eval-view", choices=EVAL_VIEWS, default="library",
                   help="how predict and evaluate crop and resize a photo: library (default: as the weights' "
                        "library evaluates them, from the hub config.json's pretrained_cfg, else the family's "
                        "default: short side resized to size / crop_pct, center crop) or tf (TensorFlow's: "
                        "center crop of size / (size + 32) of the short side, then resize)")
    p.add_argument("--init", choices=INIT_SCHEMES, default="xavier", help="init of fresh tensors (--variant)")
    p.add_argument("--seed", type=int, default=0, help="seed of fresh tensors (--variant)")
    p.add_argument("--ema", action="store_true", help="with --to: export the checkpoint's EMA weights")
    return p


def check(p, args):
    """Refuse a request no conversion can carry out, before reading anything."""
    if args.target is not None:
        given = [f"--{name.replace('_', '-')}" for name in IMPORT_ONLY
                 if getattr(args, name) != p.get_default(name)]
        if given:
            p.error(f"{given[0]} is for --from; with --to the checkpoint says what it is")
    elif args.ema:
        p.error("--ema is for --to (a published state dict has no EMA weights)")
    for flag, value in (("--width", args.width), ("--depth", args.depth)):
        if value is not None and not valid_multiplier(value):
            p.error(f"{flag} {MULTIPLIER_RULE}, got {value}")
    if args.image_size is not None and args.image_size < 1:
        p.error(f"--image-size must be at least 1, got {args.image_size}")
    try:
        canonical_variant(args.variant)
    except ValueError as e:
        p.error(str(e))
    if not os.path.exists(args.path):
        p.error(f"{args.path} does not exist")
    if args.source is not None and os.path.isdir(args.path):  # a hub download folder
        inside = os.path.join(args.path, HUB_WEIGHTS)
        if not os.path.isfile(inside):
            p.error(f"{args.path} is a folder without {HUB_WEIGHTS}: give the .safetensors file to convert")
        args.path = inside
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        p.error(f"--out {args.out}: the folder {folder} does not exist")
    if os.path.isdir(args.out):
        p.error(f"--out {args.out} is a folder: give the file to write in it, e.g. "
                f"{os.path.join(args.out, 'model.safetensors')}")
    if os.path.exists(args.out) and os.path.samefile(args.out, args.path):
        p.error(f"--out {args.out} is SRC itself: write to another file")


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    check(p, args)
    try:
        if args.source is not None:
            imported = import_weights(args.path, args.source, **{name: getattr(args, name) for name in IMPORT_ONLY})
            write_checkpoint_file(args.out, imported.records, imported.meta)
            report_import(args, imported)
        else:
            exported = export_weights(args.path, args.target, args.ema)
            write_state_dict(args.out, exported.records, exported.metadata)
            print(f"wrote {args.out}: {exported.architecture} state dict, {len(exported.records)} tensors; load it "
                  f"with model = {exported.how_to_load}; model.load_state_dict(safetensors.torch.load_file("
                  f"{args.out!r}))")
    except WriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (WeightsError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def report_import(args, imported):
    spec = ModelSpec.from_meta(imported.meta)
    feed = spec.feed()
    architecture = imported.meta["source"]["architecture"]
    reduced = "".join(f", {k} {getattr(spec, k)}" for k in ("width", "depth") if getattr(spec, k) is not None)
    mean = ", ".join(f"{v:g}" for v in feed.normalization.mean)
    std = ", ".join(f"{v:g}" for v in feed.normalization.std)
    print(f"converted {args.path} ({architecture}{reduced}, {spec.num_classes} classes) -> {args.out}: "
          f"tinyeffnet {spec.variant} {spec.model}, {spec.padding} padding, BN eps {spec.bn_eps:g}, "
          f"eval view: {feed.view.describe(feed.resolution)}, mean ({mean}) std ({std})")
    if imported.hub_config is None and FAMILIES[args.source].library == "timm":
        print(f"no hub config.json beside {args.path}: read as {architecture}, as --from {args.source} says (timm's "
              "tf_efficientnet_bN and efficientnet_bN share their tensor names, so the file cannot tell them apart: "
              "--from decides the padding and BN eps, --model the size)")
    if imported.transfer is not None:
        print(f"variant {spec.variant}: {imported.transfer.describe()}")


if __name__ == "__main__":
    run_command(main)
