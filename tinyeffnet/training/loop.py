"""The training loop: `train(cfg)` reads top to bottom.

Set up (everything that can refuse the request, then the network and its compiled steps),
then for each step: the learning rate from the schedule, one step, its metrics fetched one
step late (so the host never waits for the device), a checkpoint every --checkpoint-every
steps, an evaluation every --eval-every epochs and at the end; then the summary.

The work directory (tinyeffnet.training.rundir): config.json, metrics.jsonl, curves.png,
summary.json and checkpoints/. --resume continues the latest checkpoint on the same
trajectory: same data order, same random keys, same parameters.
"""
import logging
import math
import os
import sys
import time
from typing import NamedTuple

from tqdm.contrib.logging import logging_redirect_tqdm

from data_tools import DataError, Loader, open_dataset
from data_tools.pixels import Normalization

from .._files import WriteError, make_dirs, write_json
from ..model import ModelSpec, build_model
from ..nn.transfer import load_matching
from ..plotting import plot_metrics
from .checkpoint import CheckpointError, step_path
from .config import ConfigError
from .evaluation import Evaluator
from .metrics_file import MetricsLog
from .runtime import make_runtime
from .preemption import StopAgreement, Stopped, StopRequest
from .rundir import Checkpoints, Claim, NoClaim, check_workdir, default_workdir, refuse_if_held, starting_point
from .schedule import itstime, learning_rate
from .step import StepOptions, init_state, make_bn_statistics_step, make_eval_step, make_train_step, trainable_names


class TrainingError(RuntimeError):
    """A run that cannot go on (it diverged); the message says what was kept."""


def train(cfg):
    """Train as `cfg` says; returns the summary (also written to summary.json).

    Everything that can refuse the request (flags, data, the work directory and its claim, a
    checkpoint to resume) is checked before anything is written: a ConfigError leaves the
    disk as it was. SIGTERM or SIGINT stops the run after the step in flight with a
    checkpoint of that step (raises Stopped: tinyeffnet.training.preemption)."""
    started = time.time()
    run = set_up(cfg)
    with run.claim:  # held until the end: no other process writes this work directory
        state, step = _starting_state(cfg, run)
        log = _open_workdir(cfg, run, step)
        steps_per_epoch = run.train_loader.steps_per_epoch
        total_steps = min(cfg.epochs * steps_per_epoch, cfg.max_steps or math.inf)
        run.say(f"data {cfg.data}: {run.train_loader.num_examples} train / {run.eval_loader.num_examples} eval "
                f"images, {cfg.image_size}x{cfg.image_size}, batch {cfg.batch_size}, {steps_per_epoch} steps per "
                f"epoch, {total_steps} steps; workdir {run.workdir}")

        def lr_at(s):
            return learning_rate(s / steps_per_epoch, cfg.lr, cfg.warmup_epochs, cfg.cosine_epochs)

        recorder = StepRecorder(run.runtime, log, cfg, steps_per_epoch, lr_at, run.checkpoints)
        with StopRequest() as request:
            state, step, result, fields = _loop(cfg, run, state, step, total_steps, lr_at, log, recorder,
                                                StopAgreement(run.runtime, request))
        if result is None:  # resumed a finished run: score what is there
            result, fields = run.evaluator.score(state)
        return _finish(cfg, run, log, recorder, result, fields, "ema" if "ema" in state else "raw", step, started)


def _loop(cfg, run, state, step, total_steps, lr_at, log, recorder, stop):
    """Steps from `step` to `total_steps`, evaluating and checkpointing on the way; returns
    (state, step, the last evaluation's result and fields, or None, None)."""
    runtime, train_loader, checkpoints, evaluator = run.runtime, run.train_loader, run.checkpoints, run.evaluator
    steps_per_epoch = train_loader.steps_per_epoch
    progress = _progress_bar(total_steps, step, runtime.is_main)
    result = fields = None
    try:
        while step < total_steps:
            epoch, in_epoch = divmod(step, steps_per_epoch)
            for batch in train_loader.batches(epoch, in_epoch):
                images, labels, _ = runtime.put_batch(batch, train_loader.batch_shape, evaluator.normalization)
                state, metrics = run.train_step(state, images, labels, runtime.step_key(cfg.seed, step), lr_at(step))
                recorder.issued(step, metrics)
                step += 1
                recorder.show(progress, step, lr_at(step - 1))
                if itstime(step, cfg.checkpoint_every) and step < total_steps:
                    recorder.flush()
                    checkpoints.save(state, step)
                if step >= total_steps:
                    break
                # At an epoch's end the stop waits for its evaluation (a resumed run would skip it).
                if step % steps_per_epoch and (signum := stop.now()):
                    _stop(run, recorder, state, step, signum)
            recorder.flush()
            if itstime(step, cfg.eval_every * steps_per_epoch, total_steps):
                state, result, fields = evaluator.after_epoch(state, (step - 1) // steps_per_epoch)
                record = dict(kind="epoch", epoch=step / steps_per_epoch, step=step, **fields)
                log.write(record)
                run.say(_epoch_line(record, "ema" in state))
                checkpoints.save(state, step, result["top1"], record)
            if step < total_steps and (signum := stop.now()):
                _stop(run, recorder, state, step, signum)
    finally:
        progress.close()
        train_loader.close()
        run.eval_loader.close()
    return state, step, result, fields


def _stop(run, recorder, state, step, signum):
    """The run was asked to stop (a signal) after `step`: keep a checkpoint of it, then raise Stopped."""
    recorder.flush()
    if run.checkpoints.saved_step != step:
        run.checkpoints.save(state, step)
    raise Stopped(signum, step, step_path(run.checkpoints.directory, step), run.workdir)


# --------------------------------------------------------------------- set-up and end
class Run(NamedTuple):
    """The pieces of one run, as set_up makes them."""
    runtime: object
    workdir: str
    say: object              # print on the main process, silence elsewhere
    net: object
    optimizer: object
    train_step: object       # compiled: (state, images, labels, key, lr) -> (state, metrics)
    train_loader: Loader
    eval_loader: Loader
    evaluator: Evaluator
    checkpoints: Checkpoints
    claim: object            # rundir.Claim: this process alone writes the work directory


def set_up(cfg):
    """The run's pieces. Everything that can refuse the request (flags, data, the work
    directory, the weights to start from) is read first and refused as a ConfigError, before
    anything is written; then the work directory is claimed, and the network is built."""
    try:
        runtime = make_runtime(cfg.backend, cfg.dtype, cfg.coordinator_address, cfg.num_processes, cfg.process_id)
        _check_batch_split(cfg.batch_size, runtime)
        workdir = cfg.workdir or default_workdir(cfg)
        if runtime.is_main:  # the others write nothing (and on a shared folder would see the first one's files)
            refuse_if_held(workdir)  # a run in progress is named, not misread as a folder holding one
        if runtime.is_main or cfg.resume:
            check_workdir(workdir, cfg)
        start = starting_point(cfg, runtime.backend, workdir)
        train_loader, eval_loader = _open_loaders(cfg, runtime)  # each host reads its shard of every batch
    except (ValueError, OSError) as e:  # DataError and CheckpointError are ValueErrors
        raise ConfigError(str(e)) from None
    claim = NoClaim()
    try:
        claim = _claim(workdir, cfg, runtime.is_main)
        return _build(cfg, runtime, workdir, start, train_loader, eval_loader, claim)
    except BaseException:
        claim.release(undo=True)
        train_loader.close()
        eval_loader.close()
        raise


def _build(cfg, runtime, workdir, start, train_loader, eval_loader, claim):
    """The network (its ModelSpec: the flags, the data, and the padding, BN eps and pixels'
    normalization of the weights it starts from), its steps, its evaluator and checkpoints."""
    say = print if runtime.is_main else (lambda *a, **k: None)
    # Pixels are normalised as the weights were trained: a converted model's mean/std on photos.
    normalization = Normalization(*start.normalization) if start.normalization else train_loader.normalization
    spec = ModelSpec(cfg.variant, cfg.model, train_loader.num_classes, cfg.width, cfg.depth, start.padding,
                     start.bn_eps, image_size=cfg.image_size, data=cfg.data, normalization=normalization,
                     class_names=train_loader.class_names)
    net = build_model(spec, init=cfg.init, seed=cfg.seed, backend=runtime.backend, bn_momentum=cfg.bn_momentum,
                      dropout=cfg.dropout, drop_connect=cfg.drop_connect)
    if start.weights is not None:
        say(f"init from {start.path}: {load_matching(net, start.weights).describe()}")
    optimizer = runtime.make_optimizer(trainable_names(net, cfg.freeze_backbone), cfg.momentum, cfg.weight_decay)
    options = StepOptions(cfg.label_smoothing, runtime.compute_dtype, cfg.ema_decay, cfg.freeze_backbone,
                          cfg.clip_grad_norm)
    train_step = runtime.compile_train_step(make_train_step(net, optimizer, options))
    evaluator = Evaluator(runtime, runtime.compile_eval_step(make_eval_step(net, options)),
                          runtime.compile_bn_statistics_step(make_bn_statistics_step(net, options)),
                          train_loader, eval_loader, normalization, cfg.eval_examples, cfg.precise_bn)
    checkpoints = Checkpoints(workdir, runtime, spec, cfg, train_loader.steps_per_epoch)
    return Run(runtime, workdir, say, net, optimizer, train_step, train_loader, eval_loader, evaluator, checkpoints,
               claim)


def _claim(workdir, cfg, main):
    """The work directory's claim (only the first process writes), checked again once held:
    another run may have written the folder since check_workdir read it."""
    if not main:
        return NoClaim()
    claim = Claim.take(workdir)
    try:
        check_workdir(workdir, cfg)
    except ConfigError:
        claim.release(undo=True)
        raise
    return claim


def _starting_state(cfg, run):
    """(state, step): step 0, or the latest checkpoint of the run being resumed."""
    state = init_state(run.net, run.optimizer, ema=cfg.ema_decay > 0, freeze_backbone=cfg.freeze_backbone)
    if cfg.resume and run.checkpoints.latest() is not None:
        try:
            state, step = run.checkpoints.restore(state)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        run.say(f"resumed from {run.checkpoints.restored_from} at step {step}")
        return state, step
    if cfg.resume:
        run.say(f"no checkpoint in {run.checkpoints.directory} yet: the run starts again from step 0")
    return run.runtime.put_state(state), 0


def _open_workdir(cfg, run, step):
    """From here on the run writes into its work directory, config.json first (a folder holds
    a run exactly when it holds a config.json); returns the metrics log."""
    main = run.runtime.is_main
    if main and not cfg.resume:
        make_dirs(run.workdir)
        write_json(os.path.join(run.workdir, "config.json"), dict(vars(cfg), **run.net.spec.to_meta()))
    log = MetricsLog(os.path.join(run.workdir, "metrics.jsonl"), main, step if cfg.resume else None)
    if main:
        make_dirs(run.checkpoints.directory)
    net = run.net
    run.say(f"tinyeffnet: {net.variant} {net.model_name} ({net.num_parameters():,} parameters), "
            f"{run.runtime.description}")
    return log


def _epoch_line(record, ema):
    return (f"\nepoch {record['epoch']:.2f} step {record['step']}: eval top-1 {record['eval_top1']:.4f} "
            f"top-5 {record['eval_top5']:.4f} loss {record['eval_loss']:.4f} on {record['eval_images']} images"
            + (f" (EMA top-1 {record['ema_top1']:.4f})" if ema else ""))


def _finish(cfg, run, log, recorder, result, fields, weights, step, started):
    """The summary: returned, and on the main process written to summary.json (with curves.png)."""
    net, loaders = run.net, (run.train_loader, run.eval_loader)
    summary = dict(top1=result["top1"], top5=result["top5"], eval_loss=result["loss"], eval_images=result["images"],
                   weights=weights, raw_top1=fields["eval_top1"], raw_top5=fields["eval_top5"],
                   images_per_s=recorder.run_images_per_s(), seconds=time.time() - started, steps=step,
                   variant=net.variant, model=net.model_name, backend=cfg.backend, data=cfg.data,
                   workdir=run.workdir, unreadable_images=sum(loader.unreadable_count for loader in loaders))
    if not run.runtime.is_main:
        return summary
    write_json(os.path.join(run.workdir, "summary.json"), dict(summary, config=vars(cfg)))
    plot_metrics(log.records(), os.path.join(run.workdir, "curves.png"),
                 title=f"tinyeffnet {net.variant} {net.model_name} on {cfg.data}")
    if summary["unreadable_images"]:
        run.say(f"skipped {summary['unreadable_images']} unreadable image files (listed in the log above)")
    speed = f"{summary['images_per_s']:.1f} images/s" if summary["images_per_s"] else "images/s not measured"
    run.say(f"done: {net.variant} top-1 {result['top1']:.4f} top-5 {result['top5']:.4f} on {result['images']} test "
            f"images{' (EMA weights)' if weights == 'ema' else ''}, {speed}, {summary['seconds']:.0f} s; "
            f"{run.workdir}")
    return summary


def run(cfg):
    """train(cfg) as a command runs it: an exit status and, on failure, one line.

    2: the request was refused (ConfigError: bad flags, or the work directory holds another
    run or is claimed by a live one), nothing was written; 1: the run failed (it diverged, a
    write failed, the data broke), what it wrote before stays loadable; 143 (SIGTERM) or 130
    (SIGINT, Ctrl-C): stopped on the signal after a step, its checkpoint written (--resume
    continues); 130 also for a Ctrl-C before the first step, when there is nothing to save."""
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
    except Stopped as e:
        print(str(e), file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("interrupted: the latest checkpoint is kept; continue with --resume --workdir DIR", file=sys.stderr)
        return 130
    return 0


# --------------------------------------------------------------------- the loop's helpers
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
        if itstime(at + 1, self.cfg.log_every):
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
        if itstime(step, self.cfg.log_every) and self.last:
            shown = dict(loss=f"{self.last['loss']:.3f}", lr=f"{lr:.4f}")
            if self.images_per_s:
                shown["img_s"] = f"{self.images_per_s:.1f}"
            progress.set_postfix(shown)
