"""Training configuration: every value is a flag, and presets fill in what is not given.

Presets (chosen from --data unless --preset is given):
  imagenet  the paper's recipe (section IV-B): SGD + Nesterov 0.9, batch 2048, 350 epochs,
            peak LR 0.4 x batch / 2048 after a 5-epoch linear warmup, cosine decay, weight
            decay 1e-4, Xavier init, dropout 0.2, drop-connect 0.2, label smoothing 0.1,
            BN momentum 0.99, 224x224.
  default   the embedded Fashion-MNIST subset on a 2-core CPU, an experiment that answers:
            the SE ablation's proxy, nearly the same result for every seed and machine.
            Six epochs (120,000 training images) at 48x48 (B0's stride-32 network ends
            on a 2x2 map; at 32x32 on 1x1, where no recipe tried did as well).
            The rate warms up over a whole epoch to 0.05 (a short warmup was chaotic:
            float rounding differences grew over the first steps until the same seed
            ended anywhere in a range of several points); BN momentum 0.9 (0.99 leaves
            the moving statistics near their initial values in a few hundred steps);
            precise BN before every evaluation (the moving statistics trail the
            weights); an EMA of the weights (0.99), which is what the run reports.
            Random flips only; no dropout, drop-connect or random shifts: six epochs
            underfit with the paper's regularisation (the docs' proxy page says how
            the recipe was chosen).
  tiny      the pure-Python backend's end-to-end run: a few steps of B0 on 32x32 images,
            evaluated on a slice of the test split (minutes, not hours, in pure Python).
  finetune  an image folder (--data DIR) from pretrained weights (--init-from CKPT; chosen
            by itself for that pair): the model's own resolution (224 for b0), batch 64,
            10 epochs, peak LR 0.005 (0.4x the ImageNet recipe's 0.0125 at batch 64: the
            pretrained features are to be kept, not relearned; a starting point, not
            tuned here, no photo dataset ships with the project), a one-epoch warmup
            (the new classifier starts random and its first gradients are large), weight
            decay 1e-5, BN momentum 0.9 (a short run: the statistics must follow the new
            images within tens of steps), EfficientNet's dropout and drop-connect,
            random resized crop and flip.
"""
import argparse
import dataclasses
import math
from dataclasses import dataclass, field

from backends import backend_class
from data_tools import DataError
from data_tools.augment import AUGMENTATIONS
from data_tools.datasets import data_kind, parse_data_name

from .._cli import ArgumentParser
from ..model import MULTIPLIER_RULE, canonical_model, canonical_variant, default_resolution, valid_multiplier
from ..nn import INIT_SCHEMES
from .runtime import checked_compute_dtype, multi_process_backends, runtime_class, training_backends
from .schedule import scaled_peak_lr


class ConfigError(ValueError):
    """A flag value no run can use, or a request that cannot be carried out as given; the
    message is one line naming the flag and the fix. Commands exit with status 2."""

PRESETS = {
    "imagenet": dict(epochs=350, batch_size=2048, image_size=224, lr=None, warmup_epochs=5.0,
                     cosine_epochs=None, weight_decay=1e-4, label_smoothing=0.1, dropout=0.2,
                     drop_connect=0.2, bn_momentum=0.99, precise_bn=0, ema_decay=0.0, eval_every=1, workers=8, log_every=50,
                     checkpoint_every=1000, eval_examples=0, augment="full", autoaugment=True, max_steps=0),
    "default": dict(epochs=6, batch_size=128, image_size=48, lr=0.05, warmup_epochs=1.0,
                    cosine_epochs=None, weight_decay=5e-5, label_smoothing=0.1, dropout=0.0,
                    drop_connect=0.0, bn_momentum=0.9, precise_bn=4096, ema_decay=0.99, eval_every=1, workers=1, log_every=10,
                    checkpoint_every=200, eval_examples=0, augment="flip", autoaugment=False, max_steps=0),
    "tiny": dict(epochs=1, batch_size=8, image_size=32, lr=0.05, warmup_epochs=0.0,
                 cosine_epochs=None, weight_decay=5e-5, label_smoothing=0.1, dropout=0.2,
                 drop_connect=0.2, bn_momentum=0.9, precise_bn=0, ema_decay=0.0, eval_every=1, workers=0, log_every=1,
                 checkpoint_every=5, eval_examples=48, augment="full", autoaugment=False, max_steps=12),
    # image_size None: the model's own resolution (b0 224 ... b7 600), as the weights were trained
    "finetune": dict(epochs=10, batch_size=64, image_size=None, lr=0.005, warmup_epochs=1.0,
                     cosine_epochs=None, weight_decay=1e-5, label_smoothing=0.1, dropout=0.2,
                     drop_connect=0.2, bn_momentum=0.9, precise_bn=0, ema_decay=0.0, eval_every=1, workers=4, log_every=10,
                     checkpoint_every=500, eval_examples=0, augment="full", autoaugment=False, max_steps=0),
}


@dataclass
class TrainConfig:
    backend: str = field(default="jax", metadata=dict(help="array backend: jax (XLA: CPU, GPU, TPU) or python"))
    variant: str = field(default="base", metadata=dict(
        help="base, seend@noskip|hasskip|all or nose@noskip|hasskip|all (paper's spellings work too)"))
    model: str = field(default="b0", metadata=dict(help="b0 .. b7, compound scaling"))
    width: float = field(default=None, metadata=dict(
        help="override the model's width multiplier (e.g. 0.25: a small network for quick experiments)"))
    depth: float = field(default=None, metadata=dict(help="override the model's depth multiplier (e.g. 0.1)"))
    data: str = field(default="default", metadata=dict(
        help="default (embedded Fashion-MNIST subset), fashion-mnist:DIR, imagenet:DIR or an ImageFolder DIR"))
    preset: str = field(default=None, metadata=dict(
        help="imagenet, default, tiny or finetune (default: tiny for --backend python, default for Fashion-MNIST, "
             "finetune for an image folder with --init-from, else imagenet)"))
    init_from: str = field(default=None, metadata=dict(
        help="start from a checkpoint's weights (a file or work dir; any backend's, or a converted published "
             "one): every tensor whose name and shape fit, the rest (a classifier for another class count) "
             "initialised afresh; padding and BN eps come from the checkpoint"))
    freeze_backbone: bool = field(default=False, metadata=dict(
        help="with --init-from: train the classifier (fc) only; the backbone keeps its loaded weights and BN "
             "statistics bit for bit and runs as at eval time"))
    workdir: str = field(default=None, metadata=dict(help="output folder (default runs/<variant>-<time>)"))
    resume: bool = field(default=False, metadata=dict(help="continue from the latest checkpoint in --workdir"))
    epochs: int = field(default=None, metadata=dict(help="training epochs"))
    max_steps: int = field(default=None, metadata=dict(help="stop after this many steps (0: no limit; for smoke runs)"))
    batch_size: int = field(default=None, metadata=dict(help="global batch size (all devices and hosts)"))
    image_size: int = field(default=None, metadata=dict(help="input resolution"))
    lr: float = field(default=None, metadata=dict(
        help="peak learning rate (imagenet preset: 0.4 x batch / 2048, the paper's linear scaling)"))
    warmup_epochs: float = field(default=None, metadata=dict(help="linear warmup from 0, in epochs"))
    cosine_epochs: float = field(default=None, metadata=dict(
        help="cosine horizon T in epochs (default: --epochs; the paper writes 300 while training 350)"))
    momentum: float = field(default=0.9, metadata=dict(help="Nesterov momentum"))
    weight_decay: float = field(default=None, metadata=dict(
        help="L2 weight decay on conv/dense kernels and biases, not on BN gamma/beta"))
    label_smoothing: float = field(default=None, metadata=dict(help="label smoothing of the cross-entropy"))
    dropout: float = field(default=None, metadata=dict(help="dropout before the FC layer"))
    drop_connect: float = field(default=None, metadata=dict(help="stochastic-depth rate of the last block"))
    bn_momentum: float = field(default=None, metadata=dict(help="batch-norm moving-average momentum"))
    precise_bn: int = field(default=None, metadata=dict(
        help="before every evaluation, recompute the BN statistics over this many training images with the "
             "current weights and keep those (precise BN; 0: evaluate with the moving averages)"))
    clip_grad_norm: float = field(default=0.0, metadata=dict(
        help="scale each step's gradients down to at most this global L2 norm (0: no clipping)"))
    init: str = field(default="xavier", metadata=dict(help="xavier (the paper) or tf (official EfficientNet)"))
    ema_decay: float = field(default=None, metadata=dict(
        help="exponential moving average of the weights, e.g. 0.9999 (0: off); when on, the EMA weights are "
             "the run's reported result and the best checkpoint's measure, the raw weights evaluated beside"))
    dtype: str = field(default=None, metadata=dict(
        help="compute dtype: float32 or bfloat16 (default: bfloat16 on GPU/TPU, float32 on CPU); the python backend computes in float64"))
    seed: int = field(default=0, metadata=dict(help="seed of init, data order, augmentation and dropout"))
    augment: str = field(default=None, metadata=dict(
        help="train augmentation: full (photos: random resized crop + flip; Fashion-MNIST: flip + shift), "
             "flip (flip only) or none"))
    autoaugment: bool = field(default=None, metadata=dict(help="AutoAugment ImageNet policy (ImageNet data)"))
    workers: int = field(default=None, metadata=dict(help="data loader processes per host (0: in-process)"))
    eval_every: int = field(default=None, metadata=dict(help="evaluate every N epochs (and at the end)"))
    eval_examples: int = field(default=None, metadata=dict(help="evaluate on the first N eval images only (0: all)"))
    log_every: int = field(default=None, metadata=dict(help="write a step record to metrics.jsonl every N steps"))
    checkpoint_every: int = field(default=None, metadata=dict(help="save a checkpoint every N steps (and per epoch)"))
    keep_checkpoints: int = field(default=3, metadata=dict(help="keep the newest N checkpoints (plus the best)"))
    coordinator_address: str = field(default=None, metadata=dict(
        help="multi-host: host:port of process 0 (on Cloud TPU, leave unset: detected)"))
    num_processes: int = field(default=None, metadata=dict(help="multi-host: number of processes"))
    process_id: int = field(default=None, metadata=dict(help="multi-host: this process's index"))

    def resolved(self):
        """A copy with the preset's values filled in wherever a flag was not given."""
        preset = self.preset or self.default_preset()
        if preset not in PRESETS:
            raise ConfigError(f"--preset {preset!r} is unknown: choose one of {', '.join(PRESETS)}")
        values = dataclasses.asdict(self)
        values["preset"] = preset
        for key, value in PRESETS[preset].items():
            if values.get(key) is None:
                values[key] = value
        if self.precise_bn is None and self.freeze_backbone:
            values["precise_bn"] = 0  # a frozen backbone keeps its BN statistics as loaded
        if self.autoaugment is None:
            # The preset's AutoAugment only where it applies: photos with the full augmentation.
            values["autoaugment"] = bool(values["autoaugment"]) and values["augment"] == "full" and \
                data_kind(values["data"]) == "imagenet"
        cfg = TrainConfig(**values)
        if cfg.image_size is None:
            try:
                cfg.image_size = default_resolution(cfg.model)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if cfg.lr is None:
            cfg.lr = scaled_peak_lr(0.4, cfg.batch_size)
        if cfg.cosine_epochs is None:
            cfg.cosine_epochs = float(cfg.epochs)
        return cfg

    def default_preset(self):
        try:
            in_python = runtime_class(self.backend) and backend_class(self.backend).runs_in_python
        except (ValueError, ImportError):
            in_python = False  # check() names the problem
        if in_python:
            return "tiny"
        if data_kind(self.data or "default") == "fashion-mnist":
            return "default"
        return "finetune" if self.init_from else "imagenet"

    def check(self):
        """One clear error (ConfigError) for any value no training could use."""
        self._check_names()
        for flags, valid, rule in _NUMBER_RULES:
            for flag in flags:
                if not valid(getattr(self, flag)):
                    self._fail(flag, rule)
        self._check_combinations()
        return self

    def _fail(self, flag, rule):
        raise ConfigError(f"--{flag.replace('_', '-')} {rule}, got {getattr(self, flag)!r}")

    def _check_names(self):
        if self.backend not in training_backends():
            self._fail("backend", f"must be one of {', '.join(training_backends())}")
        for name, check in ((canonical_variant, self.variant), (canonical_model, self.model)):
            try:
                name(check)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if self.init not in INIT_SCHEMES:
            self._fail("init", f"must be one of {', '.join(INIT_SCHEMES)}")
        if self.augment not in AUGMENTATIONS:
            self._fail("augment", f"must be one of {', '.join(AUGMENTATIONS)}")
        try:
            checked_compute_dtype(self.backend, self.dtype)
            parse_data_name(self.data)
        except DataError as e:
            raise ConfigError(f"--data: {e}") from None
        except (ValueError, ImportError) as e:
            raise ConfigError(str(e)) from None
        if self.init_from is not None and not str(self.init_from).strip():
            self._fail("init_from", "must name a checkpoint file or a work directory")

    def _check_combinations(self):
        if self.autoaugment and data_kind(self.data) != "imagenet":
            raise ConfigError(f"--autoaugment is ImageNet's policy for photos, but --data {self.data!r} is "
                              "Fashion-MNIST: drop --autoaugment")
        if self.autoaugment and self.augment != "full":
            raise ConfigError(f"--autoaugment is part of the full augmentation, but --augment is {self.augment!r}: "
                              "use --augment full or --no-autoaugment")
        if self.freeze_backbone and not self.init_from:
            raise ConfigError("--freeze-backbone trains the classifier on top of loaded weights: give --init-from "
                              "CKPT (a random backbone would stay random)")
        if self.freeze_backbone and self.precise_bn:
            raise ConfigError("--precise-bn recomputes the BN statistics that --freeze-backbone keeps as loaded: "
                              "use --precise-bn 0 with --freeze-backbone")
        if (self.num_processes or 1) > 1 and self.backend not in multi_process_backends():
            raise ConfigError(f"multi-host training (--num-processes) needs --backend "
                              f"{' or '.join(multi_process_backends())}")

    def to_flags(self):
        """The command-line flags that make this config again (flags left None are left out)."""
        flags = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            flag = "--" + f.name.replace("_", "-")
            if _flag_type(f) is bool:
                flags.append(flag if value else "--no-" + flag[2:])
            else:
                flags += [flag, repr(value) if isinstance(value, float) else str(value)]
        return flags


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Each numeric flag's rule: (flags, test, the rule in words).
_NUMBER_RULES = (
    (("epochs", "batch_size", "image_size", "eval_every", "log_every", "checkpoint_every", "keep_checkpoints"),
     lambda v: isinstance(v, int) and v >= 1, "must be a whole number of at least 1"),
    (("max_steps", "workers", "eval_examples", "seed", "precise_bn"),
     lambda v: isinstance(v, int) and v >= 0, "must be a whole number, 0 or more"),
    (("lr", "cosine_epochs"), lambda v: _finite(v) and v > 0, "must be a finite number above 0"),
    (("warmup_epochs", "weight_decay", "clip_grad_norm"), lambda v: _finite(v) and v >= 0,
     "must be a finite number, 0 or more"),
    (("width", "depth"), lambda v: v is None or valid_multiplier(v), MULTIPLIER_RULE),
    (("momentum", "label_smoothing", "dropout", "drop_connect", "ema_decay", "bn_momentum"),
     lambda v: _finite(v) and 0.0 <= v < 1.0, "must be in [0, 1)"),
)


# Flags that do not change the trajectory of a run (which parameters it computes at each
# step): --resume accepts a change of these and refuses a change of any other.
NOT_TRAJECTORY = ("workdir", "resume", "preset", "workers", "log_every", "checkpoint_every", "keep_checkpoints",
                  "eval_every", "eval_examples", "max_steps", "coordinator_address", "num_processes",
                  "process_id")


# What a run did before its flag existed: a config.json without the key had this value.
BEFORE_THE_FLAG = dict(precise_bn=0)


def config_differences(saved, cfg, ignore=NOT_TRAJECTORY):
    """'--flag: was X, now Y' for every flag outside `ignore` where a saved config.json differs."""
    out = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in ignore:
            continue
        have = saved.get(f.name, BEFORE_THE_FLAG.get(f.name, f.default))  # a key older code did not write
        want = getattr(cfg, f.name)
        if f.name == "variant":
            have, want = _canonical_or_same(have), _canonical_or_same(want)
        if have != want:
            out.append(f"--{f.name.replace('_', '-')}: was {have!r}, now {want!r}")
    return out


def _canonical_or_same(name):
    try:
        return canonical_variant(name)
    except ValueError:
        return name


def _flag_type(f):
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str, "bool": bool}[f.type]
    return kind


def build_parser(prog="python -m tinyeffnet.train", description=None):
    p = ArgumentParser(prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = _flag_type(f)
        help_text = f.metadata.get("help", "")
        if f.default is None and f.name in PRESETS["imagenet"]:
            help_text += " [preset: " + ", ".join(f"{k} {v[f.name]}" for k, v in PRESETS.items()) + "]"
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        else:
            p.add_argument(flag, type=kind, default=f.default, help=help_text)
    return p


def config_from_args(args):
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
