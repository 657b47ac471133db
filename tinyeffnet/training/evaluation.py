"""Top-1, top-5 and loss over an eval split: during training and of a saved checkpoint;
precise BN statistics before an evaluation; the classes of image files (predict)."""
import heapq
import itertools
import os

from data_tools import DataError, Loader, open_dataset
from data_tools.pixels import Normalization
from data_tools.spec import open_files, spec_kind

from ..engine import functional as F
from .runtime import make_runtime
from .state import load_model
from .step import StepOptions, _logits, make_eval_step


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
    dataset = open_dataset(data, "eval", net.spec.resolution, eval_view=spec_view(net.spec, data))
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


def spec_view(spec, data):
    """The EvalView to feed `data` to the network of `spec`: the one it records (a converted
    published model's library's) when `data` is of the kind it was trained on, else None:
    the data's own (TensorFlow's for photos)."""
    if spec.eval_view is None or spec_kind(data) != spec_kind(spec.data):
        return None
    return spec.eval_view


# --------------------------------------------------------------------- predict
def make_predict_step(net, options=StepOptions()):
    """predict_step(params, buffers, images, labels, valid) -> (N, K) class probabilities,
    eval mode. `labels` and `valid` are not used: the eval step's arguments, so the runtime
    compiles and shards it the same way."""
    def predict_step(params, buffers, images, labels, valid):
        net.eval()
        with net.bind(params, buffers):
            return F.softmax(_logits(net, images, options)).data

    return predict_step


def default_workers(files, batch_size):
    """Data loader processes for `files` images: none for one batch (starting them costs more
    than decoding it), else one per core, at most 8."""
    return 0 if files <= batch_size else max(1, min(8, os.cpu_count() or 1))


class Predictor:
    """A checkpoint's network compiled once for batches of `batch_size` images: classes()
    streams the top classes of image files and folders, batch by batch."""

    def __init__(self, path, backend="jax", use_ema=None, batch_size=32):
        self.runtime = make_runtime(backend)
        self.net, self.meta = load_model(path, self.runtime.backend, use_ema)
        devices = self.runtime.device_count
        self.batch_size = max(devices, batch_size - batch_size % devices)
        # put_state copies (the train step donates its state); this program donates nothing, so on
        # one device the model's own arrays serve as they are (a second saved on a full B0)
        arrays = self.net.arrays()
        self.state = arrays if self.runtime.device_count == 1 else self.runtime.put_state(arrays)
        options = StepOptions(compute_dtype=self.runtime.compute_dtype)
        self.step = self.runtime.compile_eval_step(make_predict_step(self.net, options))

    @property
    def spec(self):
        return self.net.spec

    def open(self, paths, workers=None):
        """A Loader over the image files of `paths` prepared as the network's eval data is
        (its view, its resolution); DataError for a path that does not exist."""
        spec = self.spec
        dataset = open_files(spec.data, paths, spec.resolution, spec.view)
        workers = default_workers(len(dataset), self.batch_size) if workers is None else workers
        return Loader(dataset, self.batch_size, workers=workers, log_unreadable=False)

    def classes(self, loader, top=5):
        """Per file of `loader`, in order: (path, [(class index, probability)] best first, or
        None and the reason it could not be read)."""
        spec, backend = self.spec, self.runtime.backend
        normalization = Normalization(*spec.normalization) if spec.normalization else loader.normalization
        dataset, k = loader.dataset, spec.num_classes
        for step, batch in enumerate(loader.batches(0)):
            rows = {}
            if batch.valid:
                images, labels, valid = self.runtime.put_batch(batch, loader.batch_shape, normalization)
                probs = backend.to_flat(self.runtime.to_host(self.step(self.state["params"], self.state["buffers"],
                                                                      images, labels, valid)))
                for row in range(batch.valid):
                    values = probs[row * k:(row + 1) * k]
                    best = heapq.nlargest(min(top, k), range(k), key=values.__getitem__)
                    rows[batch.labels[row]] = [(i, values[i]) for i in best]
            first = step * loader.batch_size
            for index in range(first, min(first + loader.batch_size, len(dataset))):
                source = dataset.source(index)
                yield (source, rows[index], None) if index in rows else \
                    (source, None, loader.unreadable_files.get(source, "not decoded"))
