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
import math
import os
import sys
import time

from data_tools import DataError, Loader, open_dataset

from .._files import write_json
from ..model import build_model, canonical_variant
from ..plotting import plot_metrics
from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from .evaluation import evaluate
from .metrics_file import MetricsLog
from .runtime import make_runtime
from .schedule import learning_rate
from .state import state_from_tensors, state_to_tensors
from .step import StepOptions, init_state, make_eval_step, make_train_step

# What a checkpoint must share with the run that resumes it.
IDENTITY_KEYS = ("variant", "model", "num_classes", "width", "depth")


class TrainingError(RuntimeError):
    """A run that cannot go on (a non-finite loss); the message says what was kept."""


def train(cfg):
    """Train as `cfg` says; returns the summary (also written to summary.json)."""
    started = time.time()
    runtime = make_runtime(cfg.backend, cfg.dtype, cfg.coordinator_address, cfg.num_processes, cfg.process_id)
    _check_batch_split(cfg.batch_size, runtime)
    if cfg.resume and not cfg.workdir:
        raise ValueError("--resume needs --workdir: the run folder to continue")
    workdir = cfg.workdir or default_workdir(cfg)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if runtime.is_main:
        os.makedirs(ckpt_dir, exist_ok=True)
    say = print if runtime.is_main else (lambda *a, **k: None)

    # ---- data: each host reads only its shard of every global batch
    train_loader, eval_loader = _open_loaders(cfg, runtime)
    steps_per_epoch = train_loader.steps_per_epoch
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)

    # ---- model, optimizer, the two steps
    net = build_model(canonical_variant(cfg.variant), cfg.model, train_loader.num_classes, cfg.init, cfg.seed,
                      backend=cfg.backend, bn_momentum=cfg.bn_momentum, dropout=cfg.dropout,
                      drop_connect=cfg.drop_connect, width=cfg.width, depth=cfg.depth)
    optimizer = runtime.make_optimizer([n for n, _ in net.named_parameters()], cfg.momentum, cfg.weight_decay)
    options = StepOptions(cfg.label_smoothing, runtime.compute_dtype, cfg.ema_decay)
    train_step = runtime.compile_train_step(make_train_step(net, optimizer, options))
    eval_step = runtime.compile_eval_step(make_eval_step(net, options))
    identity = dict(variant=net.variant, model=net.model_name, num_classes=net.num_classes, width=cfg.width,
                    depth=cfg.depth, class_names=list(train_loader.class_names), image_size=cfg.image_size,
                    data=cfg.data)
    checkpoints = Checkpoints(ckpt_dir, runtime, identity, cfg, steps_per_epoch)

    # ---- where to start: step 0, or the latest checkpoint
    state, step = init_state(net, optimizer, ema=cfg.ema_decay > 0), 0
    if cfg.resume:
        state, step = checkpoints.restore(state)
        say(f"resumed from {checkpoints.restored_from} at step {step}")
    else:
        state = runtime.put_state(state)
    log = MetricsLog(os.path.join(workdir, "metrics.jsonl"), runtime.is_main, step if cfg.resume else None)
    if runtime.is_main and not cfg.resume:
        write_json(os.path.join(workdir, "config.json"), dict(vars(cfg), **identity))
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
        return evaluate(runtime, eval_step, weights["params"], weights["buffers"], eval_loader, cfg.eval_examples)

    recorder = StepRecorder(runtime, log, cfg, steps_per_epoch, lr_at)
    progress = _progress_bar(total_steps, step, runtime.is_main)
    result = None
    try:
        while step < total_steps:
            epoch, in_epoch = divmod(step, steps_per_epoch)
            for batch in train_loader.batches(epoch, in_epoch):
                images, labels, _ = runtime.put_batch(batch, train_loader.batch_shape, train_loader.normalization)
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
                result = run_eval(state)
                record = dict(kind="epoch", epoch=step / steps_per_epoch, step=step, eval_top1=result["top1"],
                              eval_top5=result["top5"], eval_loss=result["loss"], eval_images=result["images"])
                if "ema" in state:
                    ema = run_eval(state["ema"])
                    record.update(ema_top1=ema["top1"], ema_top5=ema["top5"], ema_loss=ema["loss"])
                log.write(record)
                say(f"\nepoch {step / steps_per_epoch:.2f} step {step}: eval top-1 {result['top1']:.4f} "
                    f"top-5 {result['top5']:.4f} loss {result['loss']:.4f} on {result['images']} images"
                    + (f" (EMA top-1 {record['ema_top1']:.4f})" if "ema" in state else ""))
                checkpoints.save(state, step, result["top1"], record)
    finally:
        progress.close()
        train_loader.close()
        eval_loader.close()

    if result is None:  # resumed a finished run: evaluate what is there
        result = run_eval(state)
    summary = dict(top1=result["top1"], top5=result["top5"], eval_loss=result["loss"], eval_images=result["images"],
                   images_per_s=recorder.images_per_s, seconds=time.time() - started, steps=step,
                   variant=net.variant, model=net.model_name, backend=cfg.backend, data=cfg.data, workdir=workdir,
                   unreadable_images=train_loader.unreadable_count + eval_loader.unreadable_count)
    if runtime.is_main:
        write_json(os.path.join(workdir, "summary.json"), dict(summary, config=vars(cfg)))
        plot_metrics(log.records(), os.path.join(workdir, "curves.png"),
                     title=f"tinyeffnet {net.variant} {net.model_name} on {cfg.data}")
        if summary["unreadable_images"]:
            say(f"skipped {summary['unreadable_images']} unreadable image files (listed in the log above)")
        say(f"done: {net.variant} top-1 {result['top1']:.4f} top-5 {result['top5']:.4f} on {result['images']} test "
            f"images, {summary['images_per_s']:.1f} images/s, {summary['seconds']:.0f} s; {workdir}")
    return summary


def run(cfg):
    """train(cfg) as a command runs it: an exit status, and one line on failure."""
    try:
        train(cfg)
    except (ValueError, DataError, CheckpointError, TrainingError) as e:
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

    def restore(self, template):
        """(state, step) from the latest checkpoint; refuses one of another model."""
        path = latest_checkpoint(self.directory)
        if path is None:
            raise ValueError(f"--resume: no checkpoint in {self.directory} to continue from")
        tensors, meta = load_checkpoint(path, self.runtime.backend)
        for key in IDENTITY_KEYS:
            if meta.get(key) != self.identity[key]:
                raise ValueError(f"--resume: {path} is a checkpoint of {key} {meta.get(key)!r}, this run has "
                                 f"{self.identity[key]!r}; use another --workdir or the same {key}")
        self.restored_from = path
        return self.runtime.put_state(state_from_tensors(template, tensors, path)), int(meta["step"])


class StepRecorder:
    """Each step's metrics, fetched one step late: stop on non-finite values, measure
    images/s, write a step record every --log-every steps."""

    def __init__(self, runtime, log, cfg, steps_per_epoch, lr_at):
        self.runtime, self.log, self.cfg, self.steps_per_epoch, self.lr_at = runtime, log, cfg, steps_per_epoch, lr_at
        self.pending = None      # (step, metrics arrays) of the step in flight
        self.window = None       # (time, step) where the current throughput window began
        self.images_per_s = 0.0
        self.last = {}

    def issued(self, step, metrics):
        """`step` was just issued: record the one before it (the device has moved on)."""
        if self.pending is not None:
            self.flush()
            if self.window is None:  # the first step has finished: compilation is behind us
                self.window = (time.time(), step)
        self.pending = (step, metrics)

    def flush(self):
        if self.pending is None:
            return
        at, metrics = self.pending
        self.pending = None
        values = self.runtime.fetch(metrics)
        if not math.isfinite(values["loss"]):
            raise TrainingError(f"the loss became {values['loss']} at step {at}: training stopped, the last good "
                                f"checkpoint is kept; lower --lr (now {self.cfg.lr}) or check the data")
        if values["finite"] != 1.0:  # checked before any checkpoint of this state is written
            raise TrainingError(f"the update of step {at} made the parameters non-finite (loss {values['loss']:.4g}): "
                                f"training stopped, the last good checkpoint is kept; lower --lr (now {self.cfg.lr})")
        if (at + 1) % self.cfg.log_every == 0:
            self.log.write(dict(kind="step", step=at + 1, epoch=(at + 1) / self.steps_per_epoch, loss=values["loss"],
                                lr=self.lr_at(at), top1=values["top1"], top5=values["top5"],
                                images_per_s=self.images_per_s))
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
