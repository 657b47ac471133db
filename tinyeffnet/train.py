"""`python -m tinyeffnet.train --backend jax --variant base`: train, evaluate, checkpoint.

The loop reads top to bottom: configuration (tinyeffnet.config), data (data_tools), model
(tinyeffnet.efficientnet), step (tinyeffnet.jax_step or python_step), then for each step:
learning rate from the schedule, one compiled step, metrics fetched one step late (so the
host never waits for the device), a checkpoint now and then, an evaluation per epoch.

Work directory: metrics.jsonl (step and epoch records), curves.png, summary.json and
checkpoints/ (step-*.safetensors, best.safetensors). --resume continues the latest
checkpoint on the same trajectory: same data order, same random keys, same parameters.
"""
import datetime
import json
import os
import sys
import time

from data_tools import DataError, Loader, open_dataset

from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig, build_parser, config_from_args
from .efficientnet import build_model, canonical_variant
from .plot import plot_metrics, read_metrics
from .runtime import is_finite, make_runtime
from .schedule import learning_rate


class TrainingError(RuntimeError):
    """A run that cannot go on (a non-finite loss); the message says what was kept."""


def default_workdir(cfg):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{cfg.variant.replace('@', '-')}-{cfg.model}-{stamp}")


class MetricsLog:
    """metrics.jsonl, appended line by line and fsynced, so a crash loses at most one line."""

    def __init__(self, path, enabled, resume_step=None):
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and os.path.exists(path):
            kept = [r for r in read_metrics(path) if r.get("step", 0) <= resume_step]
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

    def write(self, record):
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def evaluate(runtime, eval_step, params, buffers, loader, limit=0):
    """Top-1, top-5 and mean loss over the eval split (or its first `limit` images)."""
    totals = dict(top1=0.0, top5=0.0, loss=0.0, count=0.0)
    seen = 0
    for batch in loader.batches(0):
        if limit and seen >= limit:
            break
        if limit and seen + batch.valid > limit:
            batch = batch._replace(valid=limit - seen)
        seen += batch.valid
        images, labels, valid = runtime.put_batch(batch, loader.batch_shape, loader.normalization)
        sums = runtime.fetch(eval_step(params, buffers, images, labels, valid))
        for k in totals:
            totals[k] += sums[k]
    n = max(totals["count"], 1.0)
    return dict(top1=totals["top1"] / n, top5=totals["top5"] / n, loss=totals["loss"] / n, images=int(totals["count"]))


def _progress(total, initial, enabled):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True,
                desc="train", file=sys.stderr)


def train(cfg):
    t_start = time.time()
    runtime = make_runtime(cfg.backend, cfg.dtype, cfg.coordinator_address, cfg.num_processes, cfg.process_id)
    variant = canonical_variant(cfg.variant)
    if cfg.batch_size % runtime.device_count:
        raise ValueError(f"--batch-size {cfg.batch_size} is not divisible by the {runtime.device_count} devices: "
                         f"use a multiple of {runtime.device_count}")
    if cfg.batch_size % runtime.process_count:
        raise ValueError(f"--batch-size {cfg.batch_size} is not divisible by {runtime.process_count} processes")
    workdir = cfg.workdir or default_workdir(cfg)
    if cfg.resume and not cfg.workdir:
        raise ValueError("--resume needs --workdir: the run folder to continue")
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if runtime.is_main:
        os.makedirs(ckpt_dir, exist_ok=True)
    say = print if runtime.is_main else (lambda *a, **k: None)

    # ---- data: each host reads only its shard of every global batch
    local_batch = cfg.batch_size // runtime.process_count
    shard = dict(process_index=runtime.process_index, process_count=runtime.process_count)
    train_set = open_dataset(cfg.data, "train", cfg.image_size, autoaugment=cfg.autoaugment, augment=cfg.augment)
    eval_set = open_dataset(cfg.data, "eval", cfg.image_size)
    train_loader = Loader(train_set, local_batch, seed=cfg.seed, workers=cfg.workers, **shard)
    eval_loader = Loader(eval_set, local_batch, seed=cfg.seed, workers=cfg.workers, **shard)
    steps_per_epoch = train_loader.steps_per_epoch
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)

    # ---- model and step
    net = build_model(variant, cfg.model, train_loader.num_classes, cfg.init, cfg.seed, backend=cfg.backend,
                      bn_momentum=cfg.bn_momentum, dropout=cfg.dropout, drop_connect=cfg.drop_connect,
                      width=cfg.width, depth=cfg.depth)
    S = runtime.steps
    optimizer = S.make_optimizer([n for n, _ in net.named_parameters()], cfg.momentum, cfg.weight_decay)
    state = S.init_state(net, optimizer, ema=cfg.ema_decay > 0)
    train_step = S.make_train_step(net, optimizer, cfg.label_smoothing, runtime.compute_dtype,
                                   cfg.ema_decay or None, runtime.mesh)
    eval_step = S.make_eval_step(net, runtime.compute_dtype, runtime.mesh)
    identity = dict(variant=variant, model=net.model_name, num_classes=net.num_classes, width=cfg.width,
                    depth=cfg.depth, class_names=list(train_loader.class_names), image_size=cfg.image_size,
                    data=cfg.data)

    step = 0
    if cfg.resume:
        path = latest_checkpoint(ckpt_dir)
        if path is None:
            raise ValueError(f"--resume: no checkpoint in {ckpt_dir} to continue from")
        tensors, saved = load_checkpoint(path, runtime.backend)
        for key in ("variant", "model", "num_classes", "width", "depth"):
            if saved.get(key) != identity[key]:
                raise ValueError(f"--resume: {path} is a checkpoint of {key} {saved.get(key)!r}, this run has "
                                 f"{identity[key]!r}; use another --workdir or the same {key}")
        state = runtime.unflatten(state, tensors)
        step = int(saved["step"])
        say(f"resumed from {path} at step {step}")
    elif hasattr(runtime, "put_state"):
        state = runtime.put_state(state)

    log = MetricsLog(os.path.join(workdir, "metrics.jsonl"), runtime.is_main, step if cfg.resume else None)
    if runtime.is_main and not cfg.resume:
        open(log.path, "w").close()
        _write_json_atomically(os.path.join(workdir, "config.json"), dict(vars(cfg), **identity))
    say(f"tinyeffnet: {variant} {net.model_name} ({net.num_parameters():,} parameters), {runtime.description}")
    say(f"data {cfg.data}: {train_loader.num_examples} train / {eval_loader.num_examples} eval images, "
        f"{cfg.image_size}x{cfg.image_size}, batch {cfg.batch_size}, {steps_per_epoch} steps per epoch, "
        f"{total_steps} steps; workdir {workdir}")

    def lr_at(s):
        return learning_rate(s / steps_per_epoch, cfg.lr, cfg.warmup_epochs, cfg.cosine_epochs)

    def checkpoint(at_step, epoch, metric=None, eval_metrics=None):
        meta = dict(identity, step=at_step, epoch=epoch, config=vars(cfg), eval=eval_metrics,
                    format="tinyeffnet-1")
        tensors = runtime.flatten(state)  # every process: reading a local replica needs no peer
        if runtime.is_main:
            save_checkpoint(ckpt_dir, at_step, tensors, runtime.backend, meta,
                            keep_last=cfg.keep_checkpoints, best_metric=metric)

    def run_eval(params, buffers):
        return evaluate(runtime, eval_step, params, buffers, eval_loader, cfg.eval_examples)

    progress = _progress(total_steps, step, runtime.is_main)
    pending = None            # (step, metrics arrays) of the step in flight
    window = None             # (time, step) where the current throughput window began
    images_per_s = 0.0
    start_step = step
    last = {}
    result = None
    try:
        while step < total_steps:
            epoch, in_epoch = divmod(step, steps_per_epoch)
            for batch in train_loader.batches(epoch, in_epoch):
                lr = lr_at(step)
                images, labels, _ = runtime.put_batch(batch, train_loader.batch_shape,
                                                      train_loader.normalization)
                state, metrics = train_step(state, images, labels, runtime.step_key(cfg.seed, step), lr)
                if pending is not None:
                    last = _record(runtime, log, pending, cfg, steps_per_epoch, lr_at, images_per_s)
                    if window is None:  # the first step has finished: compilation is behind us
                        window = (time.time(), step)
                pending = (step, metrics)
                step += 1
                progress.update(1)
                if window is not None and step - window[1] >= max(cfg.log_every, 2):
                    now = time.time()
                    images_per_s = (step - 1 - window[1]) * cfg.batch_size / max(now - window[0], 1e-9)
                    window = (now, step - 1)
                if step % cfg.log_every == 0 and last:
                    shown = dict(loss=f"{last['loss']:.3f}", lr=f"{lr:.4f}")
                    if images_per_s:
                        shown["img_s"] = f"{images_per_s:.1f}"
                    progress.set_postfix(shown)
                if step % cfg.checkpoint_every == 0 and step < total_steps:
                    last = _record(runtime, log, pending, cfg, steps_per_epoch, lr_at, images_per_s)
                    pending = None
                    checkpoint(step, step / steps_per_epoch)
                if step >= total_steps:
                    break
            if pending is not None:
                last = _record(runtime, log, pending, cfg, steps_per_epoch, lr_at, images_per_s)
                pending = None
            epoch_done = step % steps_per_epoch == 0 and (step // steps_per_epoch) % cfg.eval_every == 0
            if epoch_done or step >= total_steps:
                result = run_eval(state["params"], state["buffers"])
                record = dict(kind="epoch", epoch=step / steps_per_epoch, step=step, eval_top1=result["top1"],
                              eval_top5=result["top5"], eval_loss=result["loss"], eval_images=result["images"])
                if "ema" in state:
                    ema = run_eval(state["ema"]["params"], state["ema"]["buffers"])
                    record.update(ema_top1=ema["top1"], ema_top5=ema["top5"], ema_loss=ema["loss"])
                log.write(record)
                say(f"\nepoch {step / steps_per_epoch:.2f} step {step}: eval top-1 {result['top1']:.4f} "
                    f"top-5 {result['top5']:.4f} loss {result['loss']:.4f} on {result['images']} images"
                    + (f" (EMA top-1 {record['ema_top1']:.4f})" if "ema" in state else ""))
                checkpoint(step, step / steps_per_epoch, result["top1"], record)
    finally:
        progress.close()
        train_loader.close()
        eval_loader.close()

    if result is None:  # resumed a finished run: evaluate what is there
        result = run_eval(state["params"], state["buffers"])
    seconds = time.time() - t_start
    summary = dict(top1=result["top1"], top5=result["top5"], eval_loss=result["loss"], eval_images=result["images"],
                   images_per_s=images_per_s, seconds=seconds, steps=step, variant=variant, model=net.model_name,
                   backend=cfg.backend, data=cfg.data, workdir=workdir,
                   unreadable_images=train_loader.unreadable_count + eval_loader.unreadable_count)
    if runtime.is_main:
        _write_json_atomically(os.path.join(workdir, "summary.json"), dict(summary, config=vars(cfg)))
        plot_metrics(read_metrics(log.path), os.path.join(workdir, "curves.png"),
                     title=f"tinyeffnet {variant} {net.model_name} on {cfg.data}")
        if summary["unreadable_images"]:
            say(f"skipped {summary['unreadable_images']} unreadable image files (listed in the log above)")
        say(f"done: {variant} top-1 {result['top1']:.4f} top-5 {result['top5']:.4f} on {result['images']} test "
            f"images, {images_per_s:.1f} images/s, {seconds:.0f} s; {workdir}")
    return summary


def _write_json_atomically(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _record(runtime, log, pending, cfg, steps_per_epoch, lr_at, images_per_s):
    """Fetch a finished step's metrics, stop on a non-finite loss, log every log_every steps."""
    at, metrics = pending
    values = runtime.fetch(metrics)
    if not is_finite(values["loss"]):
        raise TrainingError(f"the loss became {values['loss']} at step {at}: training stopped, the last good "
                            f"checkpoint is kept; lower --lr (now {cfg.lr}) or check the data")
    if values["finite"] != 1.0:  # checked before any checkpoint of this state is written
        raise TrainingError(f"the update of step {at} made the parameters non-finite (loss {values['loss']:.4g}): "
                            f"training stopped, the last good checkpoint is kept; lower --lr (now {cfg.lr})")
    if (at + 1) % cfg.log_every == 0:
        log.write(dict(kind="step", step=at + 1, epoch=(at + 1) / steps_per_epoch, loss=values["loss"],
                       lr=lr_at(at), top1=values["top1"], top5=values["top5"], images_per_s=images_per_s))
    return values


def main(argv=None):
    parser = build_parser(description=__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args).resolved().check()
        canonical_variant(cfg.variant)
    except ValueError as e:  # one line, like every other error of the trainer (no usage block)
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run(cfg)


def run(cfg):
    """train(cfg) with the command line's error handling: the exit code, one line on failure."""
    try:
        train(cfg)
    except (ValueError, DataError, CheckpointError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the latest checkpoint is kept; continue with --resume --workdir DIR", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
