"""A run's work directory: what it holds, when it may be written, where a run starts.

    config.json      the run's record: its network's ModelSpec (as checkpoint metadata) and
                     "config", every flag; a folder holds a run exactly when it holds a
                     config.json (written first)
    metrics.jsonl    step and epoch records        summary.json, curves.png  at the end
    checkpoints/     step-*.safetensors, best.safetensors (checkpoint_dir.py)
    .claim           whoever holds its lock writes the folder (claim.py)

`check_workdir` refuses to write over another run or to resume one with other flags;
`starting_point` reads the weights a run starts from (its own latest checkpoint, or an
--init-from file) and `run_spec` makes the network's ModelSpec from them, the flags and the
data. All of it is read before the trainer writes anything.
"""
import datetime
import os
from typing import NamedTuple

from .._files import read_json_object
from ..model import ModelSpec
from .checkpoint import load_checkpoint
from .checkpoint_dir import newest_verified
from .config import ConfigError, config_differences
from .state import holds_model, model_weights

RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "curves.png", "checkpoints")


def default_workdir(cfg):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{cfg.variant.replace('@', '-')}-{cfg.model}-{stamp}")


def checkpoints_dir(workdir):
    return os.path.join(workdir, "checkpoints")


def run_record(spec, cfg):
    """What a run is, as config.json and every checkpoint's metadata hold it: the network's
    ModelSpec (its metadata keys, at the top) and the config."""
    return dict(spec.to_meta(), config=vars(cfg))


def saved_config(workdir):
    """The config in `workdir`'s config.json ({flag: value}), or None where there is none.
    config.json of older runs held the flags and the spec side by side, at the top."""
    saved = read_json_object(os.path.join(workdir, "config.json"))
    if saved is None:
        return None
    return saved["config"] if isinstance(saved.get("config"), dict) else saved


def check_workdir(workdir, cfg):
    """Refuse to write over another run (without --resume), or into a file."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir} is a file, not a folder: give a new --workdir")
    if cfg.resume and not cfg.workdir:
        raise ConfigError("--resume needs --workdir: the run folder to continue")
    found = [n for n in RUN_FILES if os.path.exists(os.path.join(workdir, n))]
    if found and not cfg.resume:
        raise ConfigError(f"{workdir} holds another run ({', '.join(found)}): continue it with --resume, or "
                          "give a new --workdir")


def _refuse_other_flags(cfg, saved, source):
    """--resume continues a trajectory: refuse flags that would change it, against the config
    `saved` in `source` (a checkpoint's, checksummed; config.json's where none was written)."""
    differences = config_differences(saved, cfg)
    if differences:
        raise ConfigError(f"--resume: {source} was trained with other flags ({'; '.join(differences)}), so it "
                          "would not continue the same trajectory: resume with the run's own flags, or give a new "
                          "--workdir")


class Resumed(NamedTuple):
    """The checkpoint a resumed run continues from, read once: the newest that verifies, and
    the newer ones skipped [(path, why)]."""
    path: str
    tensors: dict
    meta: dict
    skipped: list = ()


class Start(NamedTuple):
    """Where a run starts: `spec`, the ModelSpec of the weights it starts from (their padding,
    BN eps and the normalization they were trained with; the defaults for a new network);
    `weights`, an --init-from file's {name: array} (`path`: that file); or `resumed`, the run's
    own latest checkpoint, restored whole."""
    spec: ModelSpec
    weights: dict = None
    path: str = None
    resumed: Resumed = None


def starting_point(cfg, backend, workdir):
    """The Start of a run: with --resume, its own newest checkpoint that verifies (the
    --init-from file is not read again and may be gone), its flags checked against the config
    inside that checkpoint; a folder without one starts the run from step 0 (a run stopped
    before its first checkpoint, or no run yet: --resume always continues what is there).
    Else the --init-from checkpoint (of the same width and depth; the variant and class count
    may differ: what fits is loaded), else the defaults."""
    if cfg.resume:
        found, skipped = newest_verified(checkpoints_dir(workdir), backend)
        if found is not None:
            path, tensors, meta = found
            _refuse_other_flags(cfg, meta.get("config") or {}, path)
            return Start(ModelSpec.from_meta(meta, path), resumed=Resumed(path, tensors, meta, skipped))
        if skipped:
            raise ValueError(f"--resume: no checkpoint in {checkpoints_dir(workdir)} verifies ({skipped[0][1]}); "
                             "move the folder away and start again")
        saved = saved_config(workdir)
        if saved is not None:
            _refuse_other_flags(cfg, saved, os.path.join(workdir, "config.json"))
    if not cfg.init_from:
        return Start(ModelSpec())
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
    return Start(theirs, model_weights(tensors), path)


def run_spec(cfg, start, dataset):
    """The ModelSpec of the network a run trains: what the flags and the data say, with the
    padding and BN eps of the weights it starts from, and their normalization where the data
    is of the kind they were trained on (ModelSpec.feed)."""
    return ModelSpec(cfg.variant, cfg.model, dataset.num_classes, cfg.width, cfg.depth, start.spec.padding,
                     start.spec.bn_eps, image_size=cfg.image_size, data=cfg.data,
                     normalization=start.spec.feed(cfg.data).normalization, class_names=dataset.class_names)
