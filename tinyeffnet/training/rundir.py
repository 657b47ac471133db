"""A run's work directory: what it holds, when it may be written, where a run starts.

    config.json      the flags and the network's ModelSpec; a folder holds a run exactly
                     when it holds a config.json (written first)
    metrics.jsonl    step and epoch records        summary.json, curves.png  at the end
    checkpoints/     step-*.safetensors, best.safetensors

`check_workdir` refuses to write over another run or to resume one with other flags;
`starting_point` reads the weights a run starts from (its own latest checkpoint, or an
--init-from file); `Checkpoints` saves the state now and then and restores the latest.
All of it is read before the trainer writes anything.
"""
import datetime
import os
from typing import NamedTuple

from data_tools.spec import spec_kind

from .._files import read_json_object
from ..model import ModelSpec
from .checkpoint import checkpoint_meta, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import ConfigError, config_differences
from .state import holds_model, model_weights, state_from_tensors, state_to_tensors

RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "curves.png", "checkpoints")


def default_workdir(cfg):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{cfg.variant.replace('@', '-')}-{cfg.model}-{stamp}")


def checkpoints_dir(workdir):
    return os.path.join(workdir, "checkpoints")


def check_workdir(workdir, cfg):
    """Refuse to write over another run, and to resume a run with another recipe."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir} is a file, not a folder: give a new --workdir")
    found = [n for n in RUN_FILES if os.path.exists(os.path.join(workdir, n))]
    if not cfg.resume:
        if found:
            raise ConfigError(f"{workdir} holds another run ({', '.join(found)}): continue it with --resume, or "
                              "give a new --workdir")
        return
    if not cfg.workdir:
        raise ConfigError("--resume needs --workdir: the run folder to continue")
    saved = read_json_object(os.path.join(workdir, "config.json"))
    if saved is None:
        why = "does not exist" if not os.path.isdir(workdir) else "holds no readable config.json"
        raise ConfigError(f"--resume: {workdir} {why}, so there is no run to continue: drop --resume to start one")
    differences = config_differences(saved, cfg)
    if differences:
        raise ConfigError(f"--resume: {workdir} was trained with other flags ({'; '.join(differences)}), so it "
                          "would not continue the same trajectory: resume with the run's own flags, or give a new "
                          "--workdir")


class Start(NamedTuple):
    """What a run takes from the weights it starts from: the network's padding and BN eps,
    the pixels' normalization (None: the dataset's own), and the weights themselves (an
    --init-from file's {name: array}; None when resuming, whose checkpoint is restored whole)."""
    padding: str
    bn_eps: float
    normalization: tuple = None
    weights: dict = None
    path: str = None


def starting_point(cfg, backend, workdir):
    """The Start of a run: its own latest checkpoint when it resumes one (the --init-from file
    is not read again and may be gone), the --init-from checkpoint (of the same width and
    depth; the variant and class count may differ: what fits is loaded), else the defaults.
    The normalization comes with the weights when the run's data is of the kind they were
    trained on (photos, or Fashion-MNIST)."""
    latest = latest_checkpoint(checkpoints_dir(workdir)) if cfg.resume else None
    weights = None
    if latest is not None:
        path, meta = None, checkpoint_meta(latest)
        theirs = ModelSpec.from_meta(meta, latest)
    elif cfg.init_from:
        path = cfg.init_from
        tensors, meta = load_checkpoint(path, backend)
        if not holds_model(tensors):
            raise ValueError(f"--init-from {path} holds no model weights (no params/ tensors): give a tinyeffnet "
                             "checkpoint (published weights: python -m tinyeffnet.convert first)")
        theirs = ModelSpec.from_meta(meta, f"--init-from {path}")
        wanted = theirs.replace(variant=cfg.variant, model=cfg.model, width=cfg.width, depth=cfg.depth)
        if not wanted.same_backbone(theirs):
            width, depth = theirs.multipliers
            raise ValueError(f"--init-from {path} holds a {theirs.model} network (width {width:g}, depth {depth:g}) "
                             f"and this run builds another: train with {theirs.backbone_flags()}")
        weights = model_weights(tensors)
    else:
        default = ModelSpec()
        return Start(default.padding, default.bn_eps)
    same_kind = spec_kind(cfg.data) == spec_kind(theirs.data)
    return Start(theirs.padding, theirs.bn_eps, theirs.normalization if same_kind else None, weights, path)


class Checkpoints:
    """The run's checkpoints/ folder: save the state now and then, restore the latest."""

    def __init__(self, workdir, runtime, spec, cfg, steps_per_epoch):
        self.directory, self.runtime, self.spec, self.cfg = checkpoints_dir(workdir), runtime, spec, cfg
        self.steps_per_epoch = steps_per_epoch
        self.restored_from = None

    def save(self, state, step, metric=None, eval_record=None):
        tensors = state_to_tensors(state, self.runtime.to_host)  # every process: a local replica needs no peer
        if not self.runtime.is_main:
            return
        meta = dict(self.spec.to_meta(), step=step, epoch=step / self.steps_per_epoch, config=vars(self.cfg),
                    eval=eval_record)
        save_checkpoint(self.directory, step, tensors, self.runtime.backend, meta,
                        keep_last=self.cfg.keep_checkpoints, best_metric=metric)

    def latest(self):
        return latest_checkpoint(self.directory)

    def restore(self, template):
        """(state, step) from the latest checkpoint; refuses one of another network."""
        path = self.latest()
        tensors, meta = load_checkpoint(path, self.runtime.backend)
        differences = ModelSpec.from_meta(meta, path).differences(self.spec)
        if differences:
            field, have, want = differences[0]
            raise ValueError(f"--resume: {path} is a checkpoint of {field} {have!r}, this run has {want!r}; use "
                             f"another --workdir or the same {field}")
        self.restored_from = path
        return self.runtime.put_state(state_from_tensors(template, tensors, path)), int(meta["step"])
