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


class Evaluator:
    """A run's evaluation after an epoch: precise BN statistics (--precise-bn) for the raw
    weights and the EMA weights, then both evaluated. With an EMA, its weights are the
    result the run reports and keeps as best (the original EfficientNet training evaluated
    its EMA weights)."""

    def __init__(self, runtime, eval_step, bn_statistics_step, train_loader, eval_loader, normalization, limit=0,
                 precise_bn=0):
        self.runtime, self.eval_step, self.bn_statistics_step = runtime, eval_step, bn_statistics_step
        self.train_loader, self.eval_loader, self.normalization = train_loader, eval_loader, normalization
        self.limit, self.precise_bn = limit, precise_bn

    def after_epoch(self, state, epoch):
        """(state, result, fields) after `epoch` (0-based): the state with what is scored
        (precise BN statistics, when on; training reads no moving statistic, so the
        parameters' trajectory is unchanged), then score(state)."""
        if self.precise_bn:
            state = self._with_precise_bn(state, epoch)
        return (state,) + self.score(state)

    def score(self, state):
        """(result, fields): the run's result (top1, top5, loss, images) and the epoch
        record's eval fields."""
        raw = self._evaluate(state)
        fields = dict(eval_top1=raw["top1"], eval_top5=raw["top5"], eval_loss=raw["loss"], eval_images=raw["images"])
        if "ema" not in state:
            return raw, fields
        ema = self._evaluate(state["ema"])
        return ema, dict(fields, ema_top1=ema["top1"], ema_top5=ema["top5"], ema_loss=ema["loss"])

    def _evaluate(self, weights):
        return evaluate(self.runtime, self.eval_step, weights["params"], weights["buffers"], self.eval_loader,
                        self.limit, self.normalization)

    def _with_precise_bn(self, state, epoch):
        def measured(weights):
            buffers = precise_bn_statistics(self.runtime, self.bn_statistics_step, weights["params"],
                                            weights["buffers"], self.train_loader, epoch, self.precise_bn,
                                            self.normalization)
            return dict(weights, buffers=buffers)
        state = measured(state)
        if "ema" in state:
            state["ema"] = measured(state["ema"])
        return state


def evaluate_checkpoint(path, data, backend="jax", batch_size=256, workers=0, use_ema=None, limit=0):
    """Evaluate a checkpoint file (or a work directory's best) on the eval split of `data`; its
    EMA weights where it has them unless `use_ema` says (see load_model)."""
    runtime = make_runtime(backend)
    net, meta = load_model(path, runtime.backend, use_ema)
    dataset = open_dataset(data, "eval", net.spec.resolution)
    if dataset.num_classes != net.num_classes:
        raise DataError(f"{data} has {dataset.num_classes} classes but the checkpoint {meta['path']} was trained "
                        f"for {net.num_classes}: evaluate it on the data it was trained on")
    batch_size -= batch_size % runtime.device_count
    loader = Loader(dataset, max(batch_size, runtime.device_count), workers=workers)
    state = runtime.put_state(net.arrays())
    eval_step = runtime.compile_eval_step(make_eval_step(net, StepOptions(compute_dtype=runtime.compute_dtype)))
    try:
        result = evaluate(runtime, eval_step, state["params"], state["buffers"], loader, limit,
                          spec_normalization(net.spec, data))
    finally:
        loader.close()
    return dict(result, checkpoint=meta["path"], variant=net.variant, model=net.model_name, data=data,
                ema=meta["ema"])


def spec_normalization(spec, data):
    """The Normalization to feed `data` to the network of `spec`: the mean/std it was trained
    with (a converted published model's, a trained run's dataset's) when `data` is of the
    kind it was trained on (photos, or Fashion-MNIST), else None: the data's own."""
    if spec.normalization is None or spec_kind(data) != spec_kind(spec.data):
        return None
    return Normalization(*spec.normalization)
