"""The training loop: `train(cfg)` is `Run.set_up(cfg)` then `run.train()`, read top to bottom.

Set up (everything that can refuse the request, then the network and its compiled steps),
then for each step: the learning rate from the schedule, one step, its metrics fetched one
step late (so the host never waits for the device), a checkpoint every --checkpoint-every
steps, an evaluation every --eval-every epochs and at the end; then the summary.

The work directory (tinyeffnet.training.rundir): config.json, metrics.jsonl, curves.png,
summary.json and checkpoints/. --resume continues the latest checkpoint on the same
trajectory: same data order, same random keys, same parameters.
"""
import math
import os
import sys
import time
from typing import NamedTuple

from backends.host_memory import peak_rss_bytes
from data_tools import Loader, open_dataset

from .._files import make_dirs, write_json
from ..model import build_model
from ..nn.transfer import load_matching
from ..plotting import plot_metrics
from .checkpoint_dir import CheckpointDir
from .claim import Claim, NoClaim, refuse_if_held
from .config import ConfigError
from .evaluation import Evaluator
from .metrics_file import MetricsLog
from .preemption import StopAgreement, Stopped, StopRequest
from .rundir import check_workdir, checkpoints_dir, default_workdir, run_record, run_spec, starting_point
from .runtime import make_runtime
from .schedule import itstime, learning_rate
from .state import state_from_tensors
from .step import StepOptions, init_state, make_train_step, trainable_names


class TrainingError(RuntimeError):
    """A run that cannot go on (it diverged); the message says what was kept."""


def train(cfg):
    """Train as `cfg` says; returns the summary (also written to summary.json).

    Everything that can refuse the request (flags, data, the work directory and its claim, a
    checkpoint to resume) is checked before anything is written: a ConfigError leaves the
    disk as it was. SIGTERM or SIGINT stops the run after the step in flight with a
    checkpoint of that step (raises Stopped: tinyeffnet.training.preemption)."""
    with Run.set_up(cfg) as run:
        return run.train()


class Loaders(NamedTuple):
    """This host's shard of the training and the evaluation data."""
    train: Loader
    eval: Loader

    def close(self):
        self.train.close()
        self.eval.close()


class Run:
    """One training run: its config, runtime and work directory; the network (its ModelSpec
    and how it is fed), the compiled step, the data, the evaluator and the checkpoints; and,
    once training, its state, step and metrics. `Run.set_up(cfg)` makes one (a context that
    holds the work directory's claim); `train()` runs it to the end."""

    def __init__(self, cfg, runtime, workdir, start, loaders, claim):
        """The network (its ModelSpec: the flags, the data, and the padding, BN eps and
        pixels' normalization of the weights it starts from), its steps, its evaluator and
        checkpoints."""
        self.cfg, self.runtime, self.workdir, self.start, self.loaders, self.claim = (
            cfg, runtime, workdir, start, loaders, claim)
        self.say = print if runtime.is_main else (lambda *a, **k: None)
        self.spec = run_spec(cfg, start, loaders.train.dataset)
        self.feed = self.spec.feed()
        self.net = build_model(self.spec, init=cfg.init, seed=cfg.seed, backend=runtime.backend,
                               bn_momentum=cfg.bn_momentum, dropout=cfg.dropout, drop_connect=cfg.drop_connect)
        if start.weights is not None:
            self.say(f"init from {start.path}: {load_matching(self.net, start.weights).describe()}")
        self.optimizer = runtime.make_optimizer(trainable_names(self.net, cfg.freeze_backbone), cfg.momentum,
                                                cfg.weight_decay)
        options = StepOptions(cfg.label_smoothing, runtime.compute_dtype, cfg.ema_decay, cfg.freeze_backbone,
                              cfg.clip_grad_norm)
        self.train_step = runtime.compile_train_step(make_train_step(self.net, self.optimizer, options))
        self.evaluator = Evaluator(runtime, self.net, options, loaders, self.feed.normalization,
                                   limit=cfg.eval_examples, precise_bn=cfg.precise_bn)
        self.steps_per_epoch = loaders.train.steps_per_epoch
        self.total_steps = min(cfg.epochs * self.steps_per_epoch, cfg.max_steps or math.inf)
        self.checkpoints = CheckpointDir(checkpoints_dir(workdir), runtime, run_record(self.spec, cfg),
                                         cfg.keep_checkpoints, self.steps_per_epoch)
        self.state = self.step = self.log = self.recorder = None
        self.started = time.time()

    # ----------------------------------------------------------------- set-up
    @classmethod
    def set_up(cls, cfg):
        """The run of `cfg`. Everything that can refuse the request (flags, data, the work
        directory, the weights to start from) is read first and refused as a ConfigError,
        before anything is written; then the work directory is claimed, and the network is
        built."""
        try:
            runtime = make_runtime(cfg.backend, cfg.dtype, cfg.coordinator_address, cfg.num_processes,
                                   cfg.process_id)
            _check_batch_split(cfg.batch_size, runtime)
            workdir = cfg.workdir or default_workdir(cfg)
            if runtime.is_main:  # the others write nothing (and on a shared folder would see the first one's files)
                refuse_if_held(workdir)  # a run in progress is named, not misread as a folder holding one
            if runtime.is_main or cfg.resume:
                check_workdir(workdir, cfg)
            start = starting_point(cfg, runtime.backend, workdir)
            loaders = _open_loaders(cfg, runtime)  # each host reads its shard of every batch
            for loader in loaders:
                loader.check_readable()  # data no batch can be built from is refused before anything is written
        except (ValueError, OSError) as e:  # DataError and CheckpointError are ValueErrors
            raise ConfigError(str(e)) from None
        claim = NoClaim()
        try:
            claim = _claim(workdir, cfg, runtime.is_main)
            return cls(cfg, runtime, workdir, start, loaders, claim)
        except BaseException:
            claim.release(undo=True)
            loaders.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self.loaders.close()
        self.claim.release(undo=kind is not None and issubclass(kind, ConfigError))

    # ----------------------------------------------------------------- the run
    def train(self):
        """Train to the end (or a stop); returns the summary, also written to summary.json."""
        self.state, self.step = self._starting_state()
        self.log = self._open_workdir()
        cfg = self.cfg
        self.say(f"data {cfg.data}: {self.loaders.train.num_examples} train / {self.loaders.eval.num_examples} eval "
                 f"images, {cfg.image_size}x{cfg.image_size}, batch {cfg.batch_size}, {self.steps_per_epoch} steps "
                 f"per epoch, {self.total_steps} steps; workdir {self.workdir}")
        self.recorder = StepRecorder(self)
        with StopRequest() as request:
            result, fields = self._loop(StopAgreement(self.runtime, request))
            request.arm()  # a signal from here on waits for the summary
            if result is None:  # resumed a finished run: score what is there
                result, fields = self.evaluator.score(self.state)
            summary = self._finish(result, fields)
        if request.signum:  # it came after the last step: the run is complete all the same
            raise Stopped(request.signum, self.step, None, self.workdir)
        return summary

    def lr_at(self, step):
        cfg = self.cfg
        return learning_rate(step / self.steps_per_epoch, cfg.lr, cfg.warmup_epochs, cfg.cosine_epochs)

    def _loop(self, stop):
        """Steps from self.step to total_steps, evaluating and checkpointing on the way; returns
        the last evaluation's (result, fields), or (None, None)."""
        cfg, runtime, loader, recorder = self.cfg, self.runtime, self.loaders.train, self.recorder
        progress = _progress_bar(self.total_steps, self.step, runtime.is_main)
        result = fields = None
        try:
            while self.step < self.total_steps:
                epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
                for batch in loader.batches(epoch, in_epoch):
                    step = self.step
                    images, labels, _ = runtime.put_batch(batch, loader.batch_shape, self.feed.normalization)
                    self.state, metrics = self.train_step(self.state, images, labels, runtime.step_key(cfg.seed, step),
                                                          self.lr_at(step))
                    stop.arm()  # compiled and issued: from here on a stop saves a checkpoint (preemption.py)
                    recorder.issued(step, metrics)
                    self.step = step = step + 1
                    recorder.show(progress, step, self.lr_at(step - 1))
                    if itstime(step, cfg.checkpoint_every) and step < self.total_steps:
                        recorder.flush()
                        self.checkpoints.save(self.state, step)
                    if step >= self.total_steps:
                        break
                    # At an epoch's end the stop waits for its evaluation (a resumed run would skip it).
                    if step % self.steps_per_epoch and (signum := stop.now()):
                        self._stop(signum)
                recorder.flush()
                if itstime(self.step, cfg.eval_every * self.steps_per_epoch, self.total_steps):
                    result, fields = self._evaluate()
                if self.step < self.total_steps and (signum := stop.now()):
                    self._stop(signum)
        finally:
            progress.close()
            self.loaders.close()
        return result, fields

    def _evaluate(self):
        """The evaluation after the epoch just finished: logged, printed, checkpointed."""
        step = self.step
        self.state, result, fields = self.evaluator.after_epoch(self.state, (step - 1) // self.steps_per_epoch)
        record = dict(kind="epoch", epoch=step / self.steps_per_epoch, step=step, **fields)
        self.log.write(record)
        self.say(_epoch_line(record, "ema" in self.state))
        self.checkpoints.save(self.state, step, record, metric=result["top1"])
        return result, fields

    def _stop(self, signum):
        """The run was asked to stop (a signal) after self.step: keep a checkpoint of it, then raise Stopped."""
        self.recorder.flush()
        if self.checkpoints.saved_step != self.step:
            self.checkpoints.save(self.state, self.step)
        raise Stopped(signum, self.step, self.checkpoints.path(self.step), self.workdir)

    def _starting_state(self):
        """(state, step): step 0, or the checkpoint of the run being resumed."""
        cfg, resumed = self.cfg, self.start.resumed
        state = init_state(self.net, self.optimizer, ema=cfg.ema_decay > 0, freeze_backbone=cfg.freeze_backbone)
        if resumed is None:
            if cfg.resume:
                self.say(f"no checkpoint in {self.checkpoints.directory} yet: the run starts from step 0")
            return self.runtime.put_state(state), 0
        differences = self.start.spec.differences(self.spec)
        if differences:
            field, have, want = differences[0]
            raise ConfigError(f"--resume: {resumed.path} is a checkpoint of {field} {have!r}, this run has {want!r}; "
                              f"use another --workdir or the same {field}")
        try:
            state = state_from_tensors(state, resumed.tensors, resumed.path)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        for path, why in resumed.skipped:
            self.say(f"skipped {path}: {why}")
        self.say(f"resumed from {resumed.path} at step {resumed.meta['step']}"
                 + (f", the newest checkpoint that verifies ({len(resumed.skipped)} newer skipped)"
                    if resumed.skipped else ""))
        return self.runtime.put_state(state), int(resumed.meta["step"])

    def _open_workdir(self):
        """From here on the run writes into its work directory, config.json first (a folder holds
        a run exactly when it holds a config.json); returns the metrics log."""
        main, cfg = self.runtime.is_main, self.cfg
        config = os.path.join(self.workdir, "config.json")
        if main and (not cfg.resume or not os.path.exists(config)):  # kept as first written when resumed
            make_dirs(self.workdir)
            write_json(config, run_record(self.spec, cfg))
        log = MetricsLog(os.path.join(self.workdir, "metrics.jsonl"), main, self.step if cfg.resume else None)
        if main:
            make_dirs(self.checkpoints.directory)
        self.say(f"tinyeffnet: {self.net.variant} {self.net.model_name} ({self.net.num_parameters():,} parameters), "
                 f"{self.runtime.description}")
        return log

    def _finish(self, result, fields):
        """The summary: returned, and on the main process written to summary.json (with curves.png)."""
        cfg, net, recorder = self.cfg, self.net, self.recorder
        weights = "ema" if "ema" in self.state else "raw"
        memory = self.runtime.memory_stats()
        summary = dict(top1=result["top1"], top5=result["top5"], eval_loss=result["loss"], eval_images=result["images"],
                       weights=weights, raw_top1=fields["eval_top1"], raw_top5=fields["eval_top5"],
                       images_per_s=recorder.run_images_per_s(), seconds=time.time() - self.started, steps=self.step,
                       variant=net.variant, model=net.model_name, backend=cfg.backend, data=cfg.data,
                       workdir=self.workdir, unreadable_images=sum(loader.unreadable_count for loader in self.loaders),
                       device=memory["device"], device_peak_bytes=memory["peak_bytes_in_use"],
                       host_peak_rss_bytes=peak_rss_bytes())
        if not self.runtime.is_main:
            return summary
        write_json(os.path.join(self.workdir, "summary.json"), dict(summary, config=vars(cfg)))
        plot_metrics(self.log.records(), os.path.join(self.workdir, "curves.png"),
                     title=f"tinyeffnet {net.variant} {net.model_name} on {cfg.data}")
        if summary["unreadable_images"]:
            self.say(f"skipped {summary['unreadable_images']} unreadable image files (listed in the log above)")
        speed = f"{summary['images_per_s']:.1f} images/s" if summary["images_per_s"] else "images/s not measured"
        self.say(f"done: {net.variant} top-1 {result['top1']:.4f} top-5 {result['top5']:.4f} on {result['images']} "
                 f"test images{' (EMA weights)' if weights == 'ema' else ''}, {speed}, {summary['seconds']:.0f} s; "
                 f"{self.workdir}")
        return summary


# --------------------------------------------------------------------- set-up helpers
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
    return Loaders(Loader(train_set, local_batch, seed=cfg.seed, workers=cfg.workers, **shard),
                   Loader(eval_set, local_batch, seed=cfg.seed, workers=cfg.workers, **shard))


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


# --------------------------------------------------------------------- the loop's helpers
def _epoch_line(record, ema):
    return (f"\nepoch {record['epoch']:.2f} step {record['step']}: eval top-1 {record['eval_top1']:.4f} "
            f"top-5 {record['eval_top5']:.4f} loss {record['eval_loss']:.4f} on {record['eval_images']} images"
            + (f" (EMA top-1 {record['ema_top1']:.4f})" if ema else ""))


def _progress_bar(total, initial, enabled):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True,
                desc="train", file=sys.stderr)


class StepRecorder:
    """Each step's metrics, fetched one step late: stop on non-finite values, measure
    images/s, write a step record every --log-every steps."""

    def __init__(self, run):
        self.run, self.cfg = run, run.cfg
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
        values = self.run.runtime.fetch(metrics)
        # Checked before any checkpoint of this state is written: every checkpoint is finite.
        if not math.isfinite(values["loss"]) or values["finite"] != 1.0:
            what = (f"the loss became {values['loss']}" if not math.isfinite(values["loss"]) else
                    "its update made the parameters, BN statistics or optimizer state non-finite")
            kept = self.run.checkpoints.latest()
            kept = f"the last finite checkpoint is {kept}" if kept else "no checkpoint had been written"
            raise TrainingError(f"training diverged at step {at + 1}: {what}; stopped, {kept}. Lower --lr (now "
                                f"{self.cfg.lr}) and start again with a new --workdir")
        self.last_step = at
        if itstime(at + 1, self.cfg.log_every):
            self.run.log.write(dict(kind="step", step=at + 1, epoch=(at + 1) / self.run.steps_per_epoch,
                                    loss=values["loss"], lr=self.run.lr_at(at), top1=values["top1"],
                                    top5=values["top5"], grad_norm=values["grad_norm"],
                                    images_per_s=self.images_per_s))
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
