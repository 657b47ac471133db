"""Top-1, top-5 and loss over an eval split: during training and of a saved checkpoint;
precise BN statistics before an evaluation."""
import itertools

from data_tools import DataError, Loader, open_dataset
from data_tools.pixels import Normalization
from data_tools.spec import spec_kind

from .runtime import make_runtime
from .state import load_model
from .step import StepOptions, make_eval_step


def evaluate(runtime, eval_step, params, buffers, loader, limit=0, normalization=None):
    """Top-1, top-5 and mean loss over the eval split (or its first `limit` images), its
    pixels normalised as the dataset says or as `normalization` (a Normalization) says."""
    normalization = normalization or loader.normalization
    totals = dict(top1=0.0, top5=0.0, loss=0.0, count=0.0)
    seen = 0
    for batch in loader.batches(0):
        if limit and seen >= limit:
            break
        if limit and seen + batch.valid > limit:
            batch = batch._replace(valid=limit - seen)
        seen += batch.valid
        images, labels, valid = runtime.put_batch(batch, loader.batch_shape, normalization)
        sums = runtime.fetch(eval_step(params, buffers, images, labels, valid))
        for k in totals:
            totals[k] += sums[k]
    n = max(totals["count"], 1.0)
    return dict(top1=totals["top1"] / n, top5=totals["top5"] / n, loss=totals["loss"] / n, images=int(totals["count"]))


def precise_bn_statistics(runtime, bn_statistics_step, params, buffers, loader, epoch, images,
                          normalization=None):
    """The BN statistics of the network `params` over the first `images` training images of
    `epoch`'s order (whole global batches, at least one, at most an epoch's), to evaluate
    with in place of the moving averages (see tinyeffnet.training.step.make_bn_statistics_step).
    The data order of the run is untouched: the loader is only read."""
    normalization = normalization or loader.normalization
    count = min(max(1, round(images / loader.global_batch_size)), loader.steps_per_epoch)
    backend = runtime.backend
    totals = runtime.put_state({n: backend.full(backend.shape(b), 0.0, backend.dtype(b)) for n, b in buffers.items()})
    batches = loader.batches(epoch)
    try:
        for batch in itertools.islice(batches, count):
            pixels, _, _ = runtime.put_batch(batch, loader.batch_shape, normalization)
            totals = bn_statistics_step(params, buffers, totals, pixels, 1.0 / count)
    finally:
        batches.close()  # the workers' prefetched batches beyond `count` are dropped now
    return totals


def evaluate_checkpoint(path, data, backend="jax", batch_size=256, workers=0, use_ema=None, limit=0):
    """Evaluate a checkpoint file (or a work directory's best) on the eval split of `data`; its
    EMA weights where it has them unless `use_ema` says (see load_model)."""
    runtime = make_runtime(backend)
    net, meta = load_model(path, backend, use_ema)
    image_size = int(meta.get("image_size") or net.default_image_size)
    dataset = open_dataset(data, "eval", image_size)
    if dataset.num_classes != net.num_classes:
        raise DataError(f"{data} has {dataset.num_classes} classes but the checkpoint {meta['path']} was trained "
                        f"for {net.num_classes}: evaluate it on the data it was trained on")
    batch_size -= batch_size % runtime.device_count
    loader = Loader(dataset, max(batch_size, runtime.device_count), workers=workers)
    state = runtime.put_state(dict(params={n: p.data for n, p in net.named_parameters()},
                                   buffers={n: b.data for n, b in net.named_buffers()}))
    eval_step = runtime.compile_eval_step(make_eval_step(net, StepOptions(compute_dtype=runtime.compute_dtype)))
    try:
        # The recorded mean/std belong to the kind of data the network was trained on.
        same_kind = spec_kind(data) == spec_kind(meta.get("data", "default"))
        result = evaluate(runtime, eval_step, state["params"], state["buffers"], loader, limit,
                          checkpoint_normalization(meta) if same_kind else None)
    finally:
        loader.close()
    return dict(result, checkpoint=meta["path"], variant=meta["variant"], model=meta["model"], data=data,
                ema=meta["ema"])


def checkpoint_normalization(meta):
    """The Normalization a checkpoint's network was trained with (its metadata records it:
    a converted published model's mean/std, a trained run's dataset's), or None."""
    recorded = meta.get("normalization")
    if not isinstance(recorded, dict):
        return None
    try:
        mean, std = tuple(float(v) for v in recorded["mean"]), tuple(float(v) for v in recorded["std"])
    except (KeyError, TypeError, ValueError):
        return None
    return Normalization(mean, std) if len(mean) == len(std) == 3 and min(std) > 0 else None
