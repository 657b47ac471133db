"""What each block of a trained network does to a batch: the scale of its output, its SE
gates, and the projection BN's moving statistics.

Made to tell an architecture's property from a defect (the README's SEend@all section):
- `out_rms`: sqrt(mean(h^2)) of the block's output h;
- `gate_mean`, `gate_low`, `gate_high`: the SE gates, one per example and channel, their
  mean and the fractions below 0.05 and above 0.95 (a gate near 0 passes almost nothing, and
  its sigmoid passes almost no gradient back: a channel shut that way tends to stay shut);
- `bn2_var`: the mean of the projection BN's moving variance, `bn2_gamma`: the mean |gamma|.

The forward is the network's own (stem, then the blocks); each SE module's input is recorded
on the way and its gates computed from it with the module's own `gate`. One compiled program
where the backend compiles (`backend.compile`: one jit program on JAX).
"""
import contextlib

from ..engine.tensor import Tensor
from ..nn.layers import BatchNorm2d
from ..training.metrics import topk_correct

GATE_LOW, GATE_HIGH = 0.05, 0.95


def block_statistics(net, params, buffers, images, train=True):
    """([{block, stage, se, skip, out_rms, gate_mean, gate_low, gate_high, bn2_var, bn2_gamma}]
    for every block of `net` with the given arrays, the logits) on `images` (N, H, W, 3;
    normalised).
    `train`: batch statistics in BN (as the training step sees it) or the moving ones; dropout
    and drop-connect are off either way (the probe looks at the network, not at its noise)."""
    b = net.backend

    def compute(params, buffers, images):
        net.eval()
        for _, module in net.named_modules():
            if isinstance(module, BatchNorm2d):
                object.__setattr__(module, "training", train)
        seen = {}
        with net.bind(params, buffers), _recording_se(net, seen):
            x = net.stem(Tensor(images, b))
            outs = []
            for block in net.blocks:
                x = block(x)
                outs.append(_mean(b, b.mul(x.data, x.data)))
            logits = net.head(x).data
        net.train(True)
        rows = []
        for i, out in enumerate(outs):
            row = dict(out_rms=b.sqrt(out))
            if i in seen:
                row.update(_gate_stats(b, seen[i]))
            rows.append(row)
        return rows, logits

    rows, logits = b.compile(compute)(params, buffers, images)
    out = []
    for i, (block, row) in enumerate(zip(net.blocks, rows)):
        spec = block.spec
        entry = dict(block=i, stage=spec.stage, se=spec.se_position or "none", skip=bool(spec.has_skip),
                     **{k: b.to_flat(v)[0] for k, v in row.items()})
        for name, stat in (("bn2_var", f"blocks.{i}.bn2.moving_var"), ("bn2_gamma", f"blocks.{i}.bn2.gamma")):
            values = b.to_flat(buffers[stat] if stat in buffers else params[stat])
            entry[name] = sum(abs(v) for v in values) / len(values)
        out.append(entry)
    return out, logits


@contextlib.contextmanager
def _recording_se(net, seen):
    """While active, every block's SE module also stores its gates in seen[i]."""
    wrapped = []
    for i, block in enumerate(net.blocks):
        se = block._modules.get("se")
        if se is None:
            continue

        def record(x, _se=se, _i=i):
            seen[_i] = _se.gate(x).data
            return type(_se).forward(_se, x)

        object.__setattr__(se, "forward", record)  # an instance attribute shadows the method
        wrapped.append(se)
    try:
        yield
    finally:
        for se in wrapped:
            del se.__dict__["forward"]


def _mean(b, x):
    axes = tuple(range(len(b.shape(x))))
    n = 1
    for d in b.shape(x):
        n *= d
    return b.reshape(b.mul(b.sum(x, axes), b.full((1,) * len(axes), 1.0 / n, b.dtype(x))), ())


def _gate_stats(b, gate):
    """The mean of the gates (N, 1, 1, C) and the fractions of them in each tail."""
    shape, dtype = b.shape(gate), b.dtype(gate)
    low = b.compare(gate, b.full(shape, GATE_LOW, dtype), "lt")
    high = b.compare(gate, b.full(shape, GATE_HIGH, dtype), "gt")
    return dict(gate_mean=_mean(b, gate), gate_low=_mean(b, low), gate_high=_mean(b, high))


def probe_checkpoint(path, data="default", backend="jax", batch_size=256, train=True):
    """block_statistics of a checkpoint's network on the first `batch_size` eval images of
    `data`, normalised as the checkpoint records; (rows, top-1 on those images, metadata).

    With `train`, BN normalises with the batch's own statistics: the top-1 then says what
    the weights can do when the moving statistics are taken out of the picture."""
    from data_tools import Loader
    from ..training.evaluation import open_eval_data
    from ..training.runtime import make_runtime
    from ..training.state import load_model
    runtime = make_runtime(backend)
    net, meta = load_model(path, runtime.backend)
    dataset, feed = open_eval_data(net.spec, data, meta["path"])
    loader = Loader(dataset, batch_size, workers=0)
    try:
        batch = next(iter(loader.batches(0)))
        images, labels, _ = runtime.put_batch(batch, loader.batch_shape, feed.normalization)
    finally:
        loader.close()
    arrays = net.arrays()
    rows, logits = block_statistics(net, arrays["params"], arrays["buffers"], images, train)
    n = batch.valid
    correct = topk_correct(net.backend, logits, labels, (1,))[1]
    top1 = sum(net.backend.to_flat(correct)[:n]) / n
    return rows, top1, meta


def format_rows(rows):
    """The rows as a Markdown table."""
    head = "| block | stage | SE | skip | output RMS | gate mean | gates < 0.05 | gates > 0.95 | bn2 var | bn2 abs(gamma) |"
    out = [head, "|" + "---:|" * 10]
    for r in rows:
        gate = (f"{r['gate_mean']:.3f} | {100 * r['gate_low']:.1f}% | {100 * r['gate_high']:.1f}%"
                if "gate_mean" in r else "— | — | —")
        out.append(f"| {r['block']} | {r['stage']} | {r['se']} | {'yes' if r['skip'] else 'no'} | "
                   f"{r['out_rms']:.3f} | {gate} | {r['bn2_var']:.3g} | {r['bn2_gamma']:.3f} |")
    return "\n".join(out)
