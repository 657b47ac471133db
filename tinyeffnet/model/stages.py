"""The paper's Table I for any variant and model size: per stage, the operator, input
resolution, channels, blocks, parameters and multiply-accumulates (MACs).

Shapes and MACs come from running the real forward pass on the `meta` backend, which
computes shapes but no values, so any model size at any resolution costs milliseconds.
MACs count convolutions, SE and the FC layer (the usual convention, 0.386 G for B0).
"""
from backends import get_backend

from ..engine.tensor import Tensor
from .efficientnet import PAPER_TABLE2, EfficientNet


def _count(module):
    return sum(p.size for p in module.parameters())


def stage_rows(net, image_size):
    """One row per paper stage: stage, operator, input resolution, channels, blocks, params, MACs."""
    meta = get_backend("meta")
    meta.macs = 0
    x = Tensor(meta.full((1, image_size, image_size, 3), 0.0, "float32"), meta)
    rows = []

    def run(stage, operator, modules, x, fn, blocks=1):
        start = meta.macs
        resolution = x.shape[1:3] if x.ndim == 4 else (1, 1)
        x = fn(x)
        rows.append(dict(stage=stage, operator=operator, resolution=list(resolution),
                         channels=x.shape[-1], blocks=blocks,
                         params=sum(_count(m) for m in modules), macs=meta.macs - start))
        return x

    net.eval()
    x = run(1, "Conv3x3", [net.stem_conv, net.stem_bn], x, net.stem)
    blocks = list(net.blocks)
    for stage in sorted({s.stage for s in net.block_specs}):
        members = [b for b in blocks if b.spec.stage == stage]
        spec = members[0].spec

        def body(x, members=members):
            for b in members:
                x = b(x)
            return x
        x = run(stage, f"MBConv{spec.expand_ratio}, k{spec.kernel}x{spec.kernel}", members, x, body, len(members))
    head_stage = rows[-1]["stage"] + 1
    x = run(head_stage, "Conv1x1 & Pooling", [net.head_conv, net.head_bn], x,
            lambda x: net.head_bn(net.head_conv(x)).swish().mean(axis=(1, 2)))
    rows[-1]["channels"] = net.head_conv.out_channels
    run(head_stage + 1, "FC", [net.fc], x, net.fc)
    return rows


def summarize(variant="base", model="b0", image_size=None, num_classes=1000):
    net = EfficientNet(variant, model, num_classes, backend="meta")
    size = image_size or net.spec.resolution
    rows = stage_rows(net, size)
    se = {"dw": "after depthwise (Fig. 1b)", "end": "at block end (Fig. 1c)", None: "none (Fig. 1a)"}
    return dict(variant=net.variant, model=net.model_name, image_size=size, num_classes=num_classes,
                params=net.num_parameters(), buffers=net.num_buffer_values(),
                macs=sum(r["macs"] for r in rows), stages=rows,
                blocks=[dict(index=i, stage=s.stage, skip=s.has_skip, se=se[s.se_position],
                             drop_connect=round(s.drop_rate, 4)) for i, s in enumerate(net.block_specs)])


def format_table(summary):
    lines = [f"EfficientNet-{summary['model'].upper()} variant {summary['variant']} at "
             f"{summary['image_size']}x{summary['image_size']}, {summary['num_classes']} classes",
             "",
             f"{'Stage':>5}  {'Operator':<18} {'Resolution':>10}  {'#Channels':>9}  {'#Blocks':>7}  "
             f"{'Params':>10}  {'MACs':>13}"]
    for r in summary["stages"]:
        h, w = r["resolution"]
        lines.append(f"{r['stage']:>5}  {r['operator']:<18} {f'{h}x{w}':>10}  {r['channels']:>9}  "
                     f"{r['blocks']:>7}  {r['params']:>10,}  {r['macs']:>13,}")
    lines += ["",
              f"trainable parameters  {summary['params']:,}",
              f"BN moving statistics  {summary['buffers']:,} (not trained)",
              f"multiply-accumulates  {summary['macs']:,} ({summary['macs'] / 1e9:.3f} G)"]
    paper = PAPER_TABLE2.get(summary["variant"])
    if paper and summary["model"] == "b0" and summary["num_classes"] == 1000:
        lines.append(f"paper's Table II      {paper[0]}M parameters, top-1 {paper[1]}%, top-5 {paper[2]}%")
    changed = [b for b in summary["blocks"] if not b["se"].startswith("after depthwise")]
    if changed:
        lines.append(f"SE changed in blocks  " + ", ".join(f"{b['index']}: {b['se']}" for b in changed))
    return "\n".join(lines)
