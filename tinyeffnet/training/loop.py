"""The training loop: `train(cfg)` reads top to bottom.

Configuration (tinyeffnet.training.config), data (data_tools), model (tinyeffnet.model),
optimizer and step (compiled by the runtime), then for each step: the learning rate from
the schedule, one step, its metrics fetched one step late (so the host never waits for the
device), a checkpoint now and then, an evaluation per epoch.

Work directory: metrics.jsonl (step and epoch records), curves.png, summary.json,
config.json and checkpoints/ (step-*.safetensors, best.safetensors). --resume continues
the latest checkpoint on the same trajectory: same data order, same random keys, same
parameters.
"""
import datetime
import logging
import math
import os
import sys
import time

from tqdm.contrib.logging import logging_redirect_tqdm

from data_tools import DataError, Loader, open_dataset
from data_tools.spec import spec_kind

from .._files import WriteError, make_dirs, read_json_object, write_json
from ..model import DEFAULT_BN_EPS, DEFAULT_PADDING, SCALING, build_model, canonical_model, canonical_variant
from ..plotting import plot_metrics
from ..weights.transfer import load_matching
from .checkpoint import CheckpointError, checkpoint_meta, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import ConfigError, config_differences
from .evaluation import checkpoint_normalization, evaluate, precise_bn_statistics
from .metrics_file import MetricsLog
from .runtime import make_runtime
from .schedule import learning_rate
from .state import model_options, model_weights, state_from_tensors, state_to_tensors
from .step import StepOptions, init_state, make_bn_statistics_step, make_eval_step, make_train_step, trainable_names

# What a checkpoint must share with the run that resumes it (a checkpoint older than a key
# holds the key's default).
IDENTITY_KEYS = ("variant", "model", "num_classes", "width", "depth", "padding", "bn_eps")
IDENTITY_DEFAULTS = dict(padding=DEFAULT_PADDING, bn_eps=DEFAULT_BN_EPS)


class TrainingError(RuntimeError):
    """A run that cannot go on (it diverged); the message says what was kept."""


def train(cfg):
    """Train as `cfg` says; returns the summary (also written to summary.json).

    Everything that can refuse the request (flags, data, the work directory, a checkpoint
    to resume) is checked before anything is written: a ConfigError leaves the disk as
    it was."""
    started = time.time()
    try:
        runtime = make_runtime(cfg.backend, cfg.dtype, cfg.coordinator_address, cfg.num_processes, cfg.process_id)
        _check_batch_split(cfg.batch_size, runtime)
        workdir = cfg.workdir or default_workdir(cfg)
        _check_workdir(workdir, cfg)
        # ---- the weights to start from, and the padding and BN eps they were trained with
        resuming = cfg.resume and latest_checkpoint(os.path.join(workdir, "checkpoints")) is not None
        start = StartingPoint(cfg, runtime, workdir, resuming)
        # ---- data: each host reads only its shard of every global batch
        train_loader, eval_loader = _open_loaders(cfg, runtime)
    except (ValueError, OSError) as e:  # DataError and CheckpointError are ValueErrors
        raise ConfigError(str(e)) from None
    say = print if runtime.is_main else (lambda *a, **k: None)
    steps_per_epoch = train_loader.steps_per_epoch
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)

    # ---- model, optimizer, the two steps
    net = build_model(canonical_variant(cfg.variant), cfg.model, train_loader.num_classes, cfg.init, cfg.seed,
                      backend=cfg.backend, bn_momentum=cfg.bn_momentum, dropout=cfg.dropout,
                      drop_connect=cfg.drop_connect, width=cfg.width, depth=cfg.depth, padding=start.padding,
                      bn_eps=start.bn_eps)
    if start.weights is not None:
        say(f"init from {start.path}: {load_matching(net, start.weights).describe()}")
        start.weights = None  # the network holds what it needs; let the rest go
    optimizer = runtime.make_optimizer(trainable_names(net, cfg.freeze_backbone), cfg.momentum, cfg.weight_decay)
    options = StepOptions(cfg.label_smoothing, runtime.compute_dtype, cfg.ema_decay, cfg.freeze_backbone,
                          cfg.clip_grad_norm)
    train_step = runtime.compile_train_step(make_train_step(net, optimizer, options))
    eval_step = runtime.compile_eval_step(make_eval_step(net, options))
    bn_statistics_step = runtime.compile_bn_statistics_step(make_bn_statistics_step(net, options))
    # Pixels are normalised as the weights were trained: a converted model's mean/std on photos.
    normalization = start.normalization or train_loader.normalization
    identity = dict(net.model_options(), class_names=list(train_loader.class_names), image_size=cfg.image_size,
                    data=cfg.data, normalization=dict(mean=list(normalization.mean), std=list(normalization.std)))
    checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), runtime, identity, cfg, steps_per_epoch)

    # ---- where to start: step 0, or the latest checkpoint of the run being resumed
    state, step = init_state(net, optimizer, ema=cfg.ema_decay > 0, freeze_backbone=cfg.freeze_backbone), 0
    if cfg.resume and checkpoints.latest() is not None:
        try:
            state, step = checkpoints.restore(state)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        say(f"resumed from {checkpoints.restored_from} at step {step}")
    else:
        if cfg.resume:
            say(f"no checkpoint in {checkpoints.directory} yet: the run starts again from step 0")
        state = runtime.put_state(state)

    # ---- from here on the run writes into its work directory, config.json first: a folder
    # holds a run exactly when it holds a config.json
    if runtime.is_main and not cfg.resume:
        make_dirs(workdir)
        write_json(os.path.join(workdir, "config.json"), dict(vars(cfg), **identity))
    log = MetricsLog(os.path.join(workdir, "metrics.jsonl"), runtime.is_main, step if cfg.resume else None)
    if runtime.is_main:
        make_dirs(checkpoints.directory)
    say(f"tinyeffnet: {net.variant} {net.model_name} ({net.num_parameters():,} parameters), {runtime.description}")
    say(f"data {cfg.data}: {train_loader.num_examples} train / {eval_loader.num_examples} eval images, "
        f"{cfg.image_size}x{cfg.image_size}, batch {cfg.batch_size}, {steps_per_epoch} steps per epoch, "
        f"{total_steps} steps; workdir {workdir}")

    def lr_at(s):
        return learning_rate(s / steps_per_epoch, cfg.lr, cfg.warmup_epochs, cfg.cosine_epochs)

    def evaluation_due(s):
        epochs_done, mid_epoch = divmod(s, steps_per_epoch)
        return s >= total_steps or (not mid_epoch and epochs_done % cfg.eval_every == 0)

    def run_eval(weights):
        return evaluate(runtime, eval_step, weights["params"], weights["buffers"], eval_loader, cfg.eval_examples,
                        normalization)

    def evaluate_state(state):
        """(the run's result, the epoch record's eval fields): the raw weights' eval and, with an
        EMA, the EMA weights' too, which are then the result the run reports and keeps as best
        (the original EfficientNet training evaluated its EMA weights)."""
        raw = run_eval(state)
        fields = dict(eval_top1=raw["top1"], eval_top5=raw["top5"], eval_loss=raw["loss"], eval_images=raw["images"])
        if "ema" not in state:
            return raw, fields
        ema = run_eval(state["ema"])
        return ema, dict(fields, ema_top1=ema["top1"], ema_top5=ema["top5"], ema_loss=ema["loss"])

    def with_precise_bn(state, epoch):
        """The state with the BN statistics of its weights (and of its EMA weights) recomputed
        over --precise-bn images of `epoch`: what is evaluated and checkpointed. Training reads
        no moving statistic, so the parameters' trajectory is unchanged."""
        def measured(weights):
            buffers = precise_bn_statistics(runtime, bn_statistics_step, weights["params"], weights["buffers"],
                                            train_loader, epoch, cfg.precise_bn, normalization)
            return dict(weights, buffers=buffers)
        state = measured(state)
        if "ema" in state:
            state["ema"] = measured(state["ema"])
        return state

    recorder = StepRecorder(runtime, log, cfg, steps_per_epoch, lr_at, checkpoints)
    progress = _progress_bar(total_steps, step, runtime.is_main)
    result = None
    try:
        while step < total_steps:
            epoch, in_epoch = divmod(step, steps_per_epoch)
            for batch in train_loader.batches(epoch, in_epoch):
                images, labels, _ = runtime.put_batch(batch, train_loader.batch_shape, normalization)
                state, metrics = train_step(state, images, labels, runtime.step_key(cfg.seed, step), lr_at(step))
                recorder.issued(step, metrics)
                step += 1
                recorder.show(progress, step, lr_at(step - 1))
                if step % cfg.checkpoint_every == 0 and step < total_steps:
                    recorder.flush()
                    checkpoints.save(state, step)
                if step >= total_steps:
                    break
            recorder.flush()
            if evaluation_due(step):
                if cfg.precise_bn:
                    state = with_precise_bn(state, (step - 1) // steps_per_epoch)
                result, fields = evaluate_state(state)
                record = dict(kind="epoch", epoch=step / steps_per_epoch, step=step, **fields)
                log.write(record)
                say(f"\nepoch {step / steps_per_epoch:.2f} step {step}: eval top-1 {fields['eval_top1']:.4f} "
                    f"top-5 {fields['eval_top5']:.4f} loss {fields['eval_loss']:.4f} on {fields['eval_images']} images"
                    + (f" (EMA top-1 {fields['ema_top1']:.4f})" if "ema" in state else ""))
                checkpoints.save(state, step, result["top1"], record)
    finally:
        progress.close()
        train_loader.close()
        eval_loader.close()

    if result is None:  # resumed a finished run: evaluate what is there
        result, fields = evaluate_state(state)
    weights = "ema" if "ema" in state else "raw"
    summary = dict(top1=result["top1"], top5=result["top5"], eval_loss=result["loss"], eval_images=result["images"],
                   weights=weights, raw_top1=fields["eval_top1"], raw_top5=fields["eval_top5"],
                   images_per_s=recorder.run_images_per_s(), seconds=time.time() - started, steps=step,
                   variant=net.variant, model=net.model_name, backend=cfg.backend, data=cfg.data, workdir=workdir,
                   unreadable_images=train_loader.unreadable_count + eval_loader.unreadable_count)
    if runtime.is_main:
        write_json(os.path.join(workdir, "summary.json"), dict(summary, config=vars(cfg)))
        plot_metrics(log.records(), os.path.join(workdir, "curves.png"),
                     title=f"tinyeffnet {net.variant} {net.model_name} on {cfg.data}")
        if summary["unreadable_images"]:
            say(f"skipped {summary['unreadable_images']} unreadable image files (listed in the log above)")
        speed = f"{summary['images_per_s']:.1f} images/s" if summary["images_per_s"] else "images/s not measured"
        say(f"done: {net.variant} top-1 {result['top1']:.4f} top-5 {result['top5']:.4f} on {result['images']} test "
            f"images{' (EMA weights)' if weights == 'ema' else ''}, {speed}, {summary['seconds']:.0f} s; {workdir}")
    return summary


def run(cfg):
    """train(cfg) as a command runs it: an exit status and, on failure, one line.

    2: the request was refused (ConfigError), nothing was written; 1: the run failed (it
    diverged, a write failed, the data broke), what it wrote before stays loadable;
    130: interrupted."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        with logging_redirect_tqdm():  # warnings go above the progress bar, not into it
            train(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except WriteError as e:
        print(f"error: {e} (files written before it are kept and load; fix the cause, then --resume)",
              file=sys.stderr)
        return 1
    except (ValueError, DataError, CheckpointError, TrainingError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the latest checkpoint is kept; continue with --resume --workdir DIR", file=sys.stderr)
        return 130
    return 0


# --------------------------------------------------------------------- the loop's helpers
def default_workdir(cfg):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{cfg.variant.replace('@', '-')}-{cfg.model}-{stamp}")


RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "curves.png", "checkpoints")


def _check_workdir(workdir, cfg):
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


def _check_batch_split(batch_size, runtime):
    if batch_size % runtime.device_count:
        raise ValueError(f"--batch-size {batch_size} is not divisible by the {runtime.device_count} devices: "
                         f"use a multiple of {runtime.device_count}")
    if batch_size % runtime.process_count:
        raise ValueError(f"--batch-size {batch_size} is not divisible by {runtime.process_count} processes")


def _open_loaders(cfg, runtime):
    local_batch = cfg.batch_size // runtime.process_count
    shard = dict(process_index=runtime.process_index, process_count=runtime.process_count)
    train_set = open_dataset(cfg.data, "train", cfg.image_size, autoaugment=cfg.autoaugment, augment=cfg.augment)
    eval_set = open_dataset(cfg.data, "eval", cfg.image_size)
    return (Loader(train_set, local_batch, seed=cfg.seed, workers=cfg.workers, **shard),
            Loader(eval_set, local_batch, seed=cfg.seed, workers=cfg.workers, **shard))


def _progress_bar(total, initial, enabled):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True,
                desc="train", file=sys.stderr)


class StartingPoint:
    """Where the network's weights and arithmetic come from, read before anything is written.

    A resumed run: its own latest checkpoint (the --init-from file is not read again and
    may be gone). A run with --init-from: that checkpoint, which must be of the same width
    and depth (the variant and class count may differ: what fits is loaded). Otherwise the
    defaults. `padding` and `bn_eps` always come with the weights, and so does the pixels'
    mean/std when the run's data is of the kind they were trained on (photos, or
    Fashion-MNIST): None leaves the dataset's own."""

    def __init__(self, cfg, runtime, workdir, resuming):
        self.path, self.weights, self.normalization = None, None, None
        self.padding, self.bn_eps = DEFAULT_PADDING, DEFAULT_BN_EPS
        if resuming:
            meta = checkpoint_meta(latest_checkpoint(os.path.join(workdir, "checkpoints")))
        elif cfg.init_from:
            self.path = cfg.init_from
            tensors, meta = load_checkpoint(self.path, runtime.backend)
            if not any(name.startswith("params/") for name in tensors):
                raise ValueError(f"--init-from {self.path} holds no model weights (no params/ tensors): give a "
                                 "tinyeffnet checkpoint (published weights: python -m tinyeffnet.convert first)")
            _check_same_network(cfg, meta, self.path)
            self.weights = model_weights(tensors)
        else:
            return
        options = model_options(meta)
        self.padding, self.bn_eps = options["padding"], options["bn_eps"]
        if spec_kind(cfg.data) == spec_kind(meta.get("data", "default")):
            self.normalization = checkpoint_normalization(meta)


def _multipliers(model, width, depth):
    """(width, depth) a network is built with: the model's own unless overridden."""
    own_width, own_depth = SCALING[model][:2]
    return (own_width if width is None else width, own_depth if depth is None else depth)


def _check_same_network(cfg, meta, path):
    """An --init-from checkpoint of another width or depth has other shapes almost
    everywhere: refuse it, naming the flags that build its network."""
    try:
        model = canonical_model(meta.get("model", "b0"))
    except ValueError as e:
        raise ValueError(f"--init-from {path}: {e}") from None
    have = _multipliers(model, meta.get("width"), meta.get("depth"))
    if have != _multipliers(canonical_model(cfg.model), cfg.width, cfg.depth):
        flags = " ".join([f"--model {model}"] + [f"--{k} {meta[k]}" for k in ("width", "depth")
                                                 if meta.get(k) is not None])
        raise ValueError(f"--init-from {path} holds a {model} network (width {have[0]:g}, depth {have[1]:g}) and this "
                         f"run builds another: train with {flags}")


class Checkpoints:
    """The run's checkpoints/ folder: save the state now and then, restore the latest."""

    def __init__(self, directory, runtime, identity, cfg, steps_per_epoch):
        self.directory, self.runtime, self.identity, self.cfg = directory, runtime, identity, cfg
        self.steps_per_epoch = steps_per_epoch
        self.restored_from = None

    def save(self, state, step, metric=None, eval_record=None):
        tensors = state_to_tensors(state, self.runtime.to_host)  # every process: a local replica needs no peer
        if not self.runtime.is_main:
            return
        meta = dict(self.identity, step=step, epoch=step / self.steps_per_epoch, config=vars(self.cfg),
                    eval=eval_record)
        save_checkpoint(self.directory, step, tensors, self.runtime.backend, meta,
                        keep_last=self.cfg.keep_checkpoints, best_metric=metric)

    def latest(self):
        return latest_checkpoint(self.directory)

    def restore(self, template):
        """(state, step) from the latest checkpoint; refuses one of another model."""
        path = self.latest()
        tensors, meta = load_checkpoint(path, self.runtime.backend)
        for key in IDENTITY_KEYS:
            have = meta.get(key, IDENTITY_DEFAULTS.get(key))
            if have != self.identity[key]:
                raise ValueError(f"--resume: {path} is a checkpoint of {key} {have!r}, this run has "
                                 f"{self.identity[key]!r}; use another --workdir or the same {key}")
        self.restored_from = path
        return self.runtime.put_state(state_from_tensors(template, tensors, path)), int(meta["step"])


class StepRecorder:
    """Each step's metrics, fetched one step late: stop on non-finite values, measure
    images/s, write a step record every --log-every steps."""

    def __init__(self, runtime, log, cfg, steps_per_epoch, lr_at, checkpoints):
        self.runtime, self.log, self.cfg, self.steps_per_epoch, self.lr_at = runtime, log, cfg, steps_per_epoch, lr_at
        self.checkpoints = checkpoints
        self.pending = None      # (step, metrics arrays) of the step in flight
        self.window = None       # (time, step) where the current throughput window began
        self.compiled = None     # (time, step) when the first step had finished
        self.images_per_s = None
        self.last, self.last_step = {}, None

    def issued(self, step, metrics):
        """`step` was just issued: record the one before it (the device has moved on)."""
        if self.pending is not None:
            self.flush()
            if self.window is None:  # the first step has finished: compilation is behind us
                self.window = self.compiled = (time.time(), step)
        self.pending = (step, metrics)

    def run_images_per_s(self):
        """The last window's images/s or, on a run too short for one, the mean since compilation."""
        if self.images_per_s or self.compiled is None or self.last_step is None:
            return self.images_per_s
        steps = self.last_step + 1 - self.compiled[1]
        seconds = time.time() - self.compiled[0]
        return steps * self.cfg.batch_size / seconds if steps > 0 and seconds > 0 else None

    def flush(self):
        if self.pending is None:
            return
        at, metrics = self.pending
        self.pending = None
        values = self.runtime.fetch(metrics)
        # Checked before any checkpoint of this state is written: every checkpoint is finite.
        if not math.isfinite(values["loss"]) or values["finite"] != 1.0:
            what = (f"the loss became {values['loss']}" if not math.isfinite(values["loss"]) else
                    "its update made the parameters, BN statistics or optimizer state non-finite")
            kept = self.checkpoints.latest()
            kept = f"the last finite checkpoint is {kept}" if kept else "no checkpoint had been written"
            raise TrainingError(f"training diverged at step {at + 1}: {what}; stopped, {kept}. Lower --lr (now "
                                f"{self.cfg.lr}) and start again with a new --workdir")
        self.last_step = at
        if (at + 1) % self.cfg.log_every == 0:
            self.log.write(dict(kind="step", step=at + 1, epoch=(at + 1) / self.steps_per_epoch, loss=values["loss"],
                                lr=self.lr_at(at), top1=values["top1"], top5=values["top5"],
                                grad_norm=values["grad_norm"], images_per_s=self.images_per_s))
        self.last = values

    def show(self, progress, step, lr):
        """Advance the progress bar to `step`; update images/s once a window is long enough."""
        progress.update(1)
        if self.window is not None and step - self.window[1] >= max(self.cfg.log_every, 2):
            now = time.time()
            self.images_per_s = (step - 1 - self.window[1]) * self.cfg.batch_size / max(now - self.window[0], 1e-9)
            self.window = (now, step - 1)
        if step % self.cfg.log_every == 0 and self.last:
            shown = dict(loss=f"{self.last['loss']:.3f}", lr=f"{lr:.4f}")
            if self.images_per_s:
                shown["img_s"] = f"{self.images_per_s:.1f}"
            progress.set_postfix(shown)
