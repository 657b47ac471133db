"""Top-1, top-5 and loss over an eval split, during training and of a saved checkpoint;
precise BN statistics before an evaluation."""
import itertools

from data_tools import DataError, Loader, open_dataset

from .runtime import make_runtime
from .state import load_model
from .step import StepOptions, make_bn_statistics_step, make_eval_step


def evaluate(runtime, eval_step, params, buffers, loader, normalization, limit=0):
    """Top-1, top-5 and mean loss over the eval split (or its first `limit` images), its
    pixels normalised with `normalization` (the network's: ModelSpec.feed)."""
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


def precise_bn_statistics(runtime, bn_statistics_step, params, buffers, loader, epoch, images, normalization):
    """The BN statistics of the network `params` over the first `images` training images of
    `epoch`'s order (whole global batches, at least one, at most an epoch's), to evaluate
    with in place of the moving averages (see tinyeffnet.training.step.make_bn_statistics_step).
    The data order of the run is untouched: the loader is only read."""
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
    weights and the EMA weights, then both evaluated on `loaders.eval` (its first `limit`
    images; 0: all), pixels normalised with `normalization`. With an EMA, its weights are the
    result the run reports and keeps as best (the original EfficientNet training evaluated
    its EMA weights)."""

    def __init__(self, runtime, net, options, loaders, normalization, *, limit=0, precise_bn=0):
        self.runtime, self.loaders, self.normalization = runtime, loaders, normalization
        self.limit, self.precise_bn = limit, precise_bn
        self.eval_step = runtime.compile_eval_step(make_eval_step(net, options))
        self.bn_statistics_step = runtime.compile_bn_statistics_step(make_bn_statistics_step(net, options))

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
        return evaluate(self.runtime, self.eval_step, weights["params"], weights["buffers"], self.loaders.eval,
                        self.normalization, self.limit)

    def _with_precise_bn(self, state, epoch):
        def measured(weights):
            buffers = precise_bn_statistics(self.runtime, self.bn_statistics_step, weights["params"],
                                            weights["buffers"], self.loaders.train, epoch, self.precise_bn,
                                            self.normalization)
            return dict(weights, buffers=buffers)
        state = measured(state)
        if "ema" in state:
            state["ema"] = measured(state["ema"])
        return state


def open_eval_data(spec, data, source):
    """The eval split of the dataset named `data` as the network of `spec` is fed (its
    resolution and eval view: ModelSpec.feed), and that Feed; a DataError when the class
    counts differ (`source` names the network in it)."""
    feed = spec.feed(data)
    dataset = open_dataset(data, "eval", feed.resolution, eval_view=feed.view)
    if dataset.num_classes != spec.num_classes:
        raise DataError(f"{data} has {dataset.num_classes} classes but {source} was trained for {spec.num_classes}: "
                        "use it on the data it was trained on")
    return dataset, feed


def evaluate_checkpoint(path, data, backend="jax", batch_size=256, workers=0, use_ema=None, limit=0):
    """Evaluate a checkpoint file (or a work directory's best) on the eval split of `data`; its
    EMA weights where it has them unless `use_ema` says (see load_model)."""
    runtime = make_runtime(backend)
    net, meta = load_model(path, runtime.backend, use_ema)
    dataset, feed = open_eval_data(net.spec, data, f"the checkpoint {meta['path']}")
    batch_size -= batch_size % runtime.device_count
    loader = Loader(dataset, max(batch_size, runtime.device_count), workers=workers)
    state = runtime.put_state(net.arrays())
    eval_step = runtime.compile_eval_step(make_eval_step(net, StepOptions(compute_dtype=runtime.compute_dtype)))
    try:
        result = evaluate(runtime, eval_step, state["params"], state["buffers"], loader, feed.normalization, limit)
    finally:
        loader.close()
    return dict(result, checkpoint=meta["path"], variant=net.variant, model=net.model_name, data=data,
                ema=meta["ema"])
