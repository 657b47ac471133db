"""The SE ablation's report: the paper's Table II beside ours, as JSON, Markdown and a PNG.

`build_table(runs, ...)` turns finished runs into one JSON-ready object (per variant: exact
parameter counts, top-1/top-5 per seed, mean, std, difference to base, the paper's figures,
throughput, time, memory; and every pair of variants the paper puts in an order, with whether
ours reproduces it); `write_report(table, directory)` writes table2.json, table2.md and
table2.png from it. Pure functions of their inputs: no training, no JAX.

Every variant is trained on the same seeds (same data order and random keys), so each
difference is judged on the per-seed differences: their mean with a 95% Student's t
interval over seeds (tinyeffnet.experiments.paired), and a verdict from the interval. The
unpaired figures (each variant's own std, and whether the difference exceeds twice the
combined std) stand beside them.

Accuracies are fractions (0..1) in the JSON, percentages in the Markdown and the chart;
the paper's figures are percentages everywhere (as printed in the paper).
"""
import collections
import math
import os
import statistics

from .._files import atomic_write, write_json
from .paired import CONFIDENCE, paired_difference, verdict as paired_verdict
from ..model import PAPER_TABLE2, VARIANTS, block_specs, build_model
from ..plotting.canvas import (AXIS, BLUE, GREEN, GRID, MUTED, ORANGE, PURPLE, RED, TEXT, Panel, format_tick,
                               new_figure, nice_ticks, padded_range, save_png)

BASE = "base"
SPREAD_FACTOR = 2.0  # a difference "exceeds the spread" when |delta| > 2 x combined std
CHART_SIZE = (1200, 620)
_COLORS = {"base": BLUE, "seend@noskip": (255, 187, 120), "seend@hasskip": ORANGE, "seend@all": RED,
           "nose@noskip": (152, 223, 138), "nose@hasskip": GREEN, "nose@all": PURPLE}
_OWN_COLORS = ((23, 190, 207), (227, 119, 194), (140, 86, 75), (188, 189, 34))  # variants not in the paper


def model_name(variant, model="b0"):
    """'nose@all' -> 'EfficientNet-B0-noSE@all', as the paper's Table II spells it (less its typo)."""
    head = f"EfficientNet-{model.upper()}"
    if variant == BASE:
        return head
    kind, where = variant.split("@")
    return f"{head}-{'SEend' if kind == 'seend' else 'noSE'}@{where}"


def block_figures(variant):
    """Which of the paper's Fig. 1 blocks a variant uses: 'Fig. 1b', 'Fig. 1a+1b', ..."""
    letters = {"dw": "b", "end": "c", None: "a"}
    return "Fig. " + "+".join(f"1{c}" for c in sorted({letters[s.se_position] for s in block_specs(variant)}))


def parameter_counts(variant, model="b0", num_classes=1000, width=None, depth=None):
    """Exact trainable parameters, counted on the meta backend (shapes only: milliseconds)."""
    options = {k: v for k, v in (("width", width), ("depth", depth)) if v is not None}
    return build_model(variant, model, num_classes, backend="meta", **options).num_parameters()


def _mean(values):
    return sum(values) / len(values) if values else None


def _std(values):
    """Sample standard deviation over seeds (n - 1); None for fewer than two runs."""
    return statistics.stdev(values) if len(values) > 1 else None


def _present(values):
    return [v for v in values if v is not None]


def build_table(runs, variants, recipe, num_classes, model="b0", width=None, depth=None, failed=(), notes=()):
    """One JSON-ready object. `runs`: {variant: [run, ...]}, a run being a dict with seed, top1, top5
    (fractions) and optionally images_per_s, seconds, steps, peak_bytes_in_use, host_peak_rss_bytes."""
    per_variant = {}
    for v in variants:
        rs = sorted(runs.get(v, []), key=lambda r: r["seed"])
        top1, top5 = [r["top1"] for r in rs], [r["top5"] for r in rs]
        paper = PAPER_TABLE2.get(v)  # None for a variant of your own
        peaks = [r.get("peak_bytes_in_use") for r in rs]
        rss = [r.get("host_peak_rss_bytes") for r in rs]
        speeds = [r.get("images_per_s") for r in rs]
        per_variant[v] = dict(
            model_name=model_name(v, model), block_arch=paper[3] if paper else block_figures(v),
            params=parameter_counts(v, model, num_classes, width, depth) if num_classes else None,
            params_1000_classes=parameter_counts(v, model, 1000, width, depth),
            seeds=[r["seed"] for r in rs], top1=top1, top5=top5,
            top1_mean=_mean(top1), top1_std=_std(top1), top5_mean=_mean(top5), top5_std=_std(top5),
            steps=[r.get("steps") for r in rs],
            images_per_s=speeds, images_per_s_mean=_mean(_present(speeds)),
            seconds=[r.get("seconds") for r in rs],
            peak_bytes_in_use=peaks if any(p is not None for p in peaks) else None,
            host_peak_rss_bytes=rss if any(p is not None for p in rss) else None,
            paper=paper and dict(params_m=paper[0], top1=paper[1], top5=paper[2],
                                 delta_top1=round(paper[1] - PAPER_TABLE2[BASE][1], 2),
                                 delta_top5=round(paper[2] - PAPER_TABLE2[BASE][2], 2)))
    base = per_variant.get(BASE)
    for v, row in per_variant.items():
        row.update(delta_top1=None, delta_top5=None, delta_top1_combined_std=None, delta_top1_exceeds_spread=None,
                   delta_top1_by_seed=None, delta_top1_paired=None, delta_top1_verdict=None)
        if base is None or not row["top1"] or not base["top1"]:
            continue
        base_by_seed = dict(zip(base["seeds"], base["top1"]))  # same seed, same data order: compare pairwise too
        row["delta_top1_by_seed"] = {s: t - base_by_seed[s] for s, t in zip(row["seeds"], row["top1"])
                                     if s in base_by_seed}
        row["delta_top1"] = row["top1_mean"] - base["top1_mean"]
        row["delta_top5"] = row["top5_mean"] - base["top5_mean"]
        if v != BASE:
            row["delta_top1_combined_std"], row["delta_top1_exceeds_spread"] = _spread(row, base, row["delta_top1"])
            paired = _paired(row, base)
            row["delta_top1_paired"] = paired
            row["delta_top1_verdict"] = {"reproduced": "above base", "contradicted": "below base"}.get(
                paired_verdict(paired), "not resolved")
    seeds = sorted({s for row in per_variant.values() for s in row["seeds"]})
    return dict(
        title="Table II: SE modules in EfficientNet, paper vs tinyeffnet",
        recipe=recipe, model=model, num_classes=num_classes, seeds=seeds,
        units=dict(top1="fraction of eval images (0..1)", paper="percent, ImageNet, as printed in the paper",
                   params="trainable parameters at num_classes; params_1000_classes: same network with "
                          "the 1000-class ImageNet head, the paper's setting"),
        paired_rule=(f"per-seed differences over the seeds both variants finished: mean and {100 * CONFIDENCE:g}% "
                     "Student's t interval (mean ± t x sd / sqrt(n)); resolved when the interval excludes 0"),
        spread_rule=(f"unpaired: |delta_top1| > {SPREAD_FACTOR:g} x sqrt(std_variant^2 + std_base^2), sample std "
                     "over seeds; null with fewer than two seeds"),
        variants=per_variant, paper_orderings=paper_orderings(per_variant), failed=list(failed), notes=list(notes))


def _spread(a, b, delta):
    """(combined std of two variants' top-1, whether `delta` between them exceeds SPREAD_FACTOR times
    it); (None, None) when either has fewer than two seeds."""
    if a["top1_std"] is None or b["top1_std"] is None:
        return None, None
    combined = math.sqrt(a["top1_std"] ** 2 + b["top1_std"] ** 2)
    return combined, abs(delta) > SPREAD_FACTOR * combined


def _paired(a, b):
    """paired_difference of two variants' top-1 (a - b), seed by seed."""
    return paired_difference(dict(zip(a["seeds"], a["top1"])), dict(zip(b["seeds"], b["top1"])))


def paper_orderings(per_variant):
    """Every pair of variants that the paper's top-1 puts in an order (ties left out), the paper's higher
    one first: the paper's difference, ours, and verdicts. `verdict`, paired: the per-seed differences'
    95% interval above 0 "reproduced", below 0 "contradicted", holding 0 "not resolved"; with one
    common seed "same direction", "opposite direction" or "tied". `unpaired_verdict`: beyond twice the
    combined std "reproduced" or "contradicted", else "within the spread" (None with one seed)."""
    rows = [(v, r) for v, r in per_variant.items() if r["paper"] and r["top1"]]
    out = []
    for i, first in enumerate(rows):
        for second in rows[i + 1:]:
            (high, rh), (low, rl) = sorted((first, second), key=lambda vr: -vr[1]["paper"]["top1"])
            paper = rh["paper"]["top1"] - rl["paper"]["top1"]
            if paper == 0:
                continue
            ours = rh["top1_mean"] - rl["top1_mean"]
            combined, exceeds = _spread(rh, rl, ours)
            unpaired = None if combined is None else (
                "reproduced" if exceeds and ours > 0 else "contradicted" if exceeds else "within the spread")
            paired = _paired(rh, rl)
            if paired["n"] >= 2:
                verdict = paired_verdict(paired)
            else:  # one common seed: its difference, not the means over seeds that only one of them has
                direction = _paired_mean(paired, ours)
                verdict = "same direction" if direction > 0 else "opposite direction" if direction < 0 else "tied"
            out.append(dict(higher=high, lower=low, paper_delta_top1=round(paper, 2), delta_top1=ours,
                            paired=paired, verdict=verdict, combined_std=combined, unpaired_verdict=unpaired))
    return out


# ------------------------------------------------------------------ Markdown
def _pct(x, std=None):
    if x is None:
        return "n/a"
    return f"{100 * x:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def _signed(x, scale=100.0, digits=2):
    return "n/a" if x is None else f"{scale * x:+.{digits}f}"


def _mib(n):
    return f"{n / 2 ** 20:,.0f} MiB"


def _recipe_line(table):
    r = table["recipe"]
    steps = f", max {r['max_steps']} steps" if r.get("max_steps") else ""
    return (f"data `{r.get('data')}` ({table['num_classes']} classes), {table['model']}, "
            f"{r.get('image_size')}x{r.get('image_size')}, batch {r.get('batch_size')}, "
            f"{r.get('epochs')} epoch{'' if r.get('epochs') == 1 else 's'}{steps}, "
            f"augmentation {r.get('augment', 'full')}{' + AutoAugment' if r.get('autoaugment') else ''}, "
            f"lr {r.get('lr'):g}, warmup {r.get('warmup_epochs'):g} epochs, weight decay {r.get('weight_decay'):g}, "
            f"label smoothing {r.get('label_smoothing'):g}, dropout {r.get('dropout'):g}, "
            f"drop-connect {r.get('drop_connect'):g}, BN momentum {r.get('bn_momentum'):g}, init {r.get('init')}"
            f"{_started_from(r)}, "
            f"backend {r.get('backend')}, eval on {r.get('eval_examples') or 'all'} images; "
            f"seeds {', '.join(map(str, table['seeds'])) or 'none'} (the same for every variant)")


def _started_from(r):
    """Runs started from other weights (--init-from) say so: every variant took what fits."""
    if not r.get("init_from"):
        return ""
    frozen = ", backbone frozen" if r.get("freeze_backbone") else ""
    return f" (started from `{r['init_from']}`: each variant's tensors that fit{frozen})"


def _paper(x, spec):
    return "n/a" if x is None else format(x, spec)


def markdown_table(table):
    """The comparison table alone (printed at the end of a run)."""
    multi = len(table["seeds"]) > 1
    head = ("| Model | Block arch. | #Params | Top-1 | Top-5 | Δ Top-1 | Δ Top-5 "
            "| Paper #Params (ours at 1000 classes) | Paper Top-1 | Paper Δ Top-1 | Paper Top-5 |")
    lines = [head, "|" + "---|" * 2 + "---:|" * 9]
    for v, row in table["variants"].items():
        p = row["paper"] or dict(params_m=None, top1=None, top5=None, delta_top1=None)
        params = "n/a" if row["params"] is None else f"{row['params']:,}"
        is_base = v == BASE
        lines.append(
            f"| {row['model_name']} | {row['block_arch']} | {params} "
            f"| {_pct(row['top1_mean'], row['top1_std'] if multi else None)} "
            f"| {_pct(row['top5_mean'], row['top5_std'] if multi else None)} "
            f"| {'—' if is_base else _signed(row['delta_top1'])} "
            f"| {'—' if is_base else _signed(row['delta_top5'])} "
            f"| {_paper(p['params_m'], '.2f')}{'M' if p['params_m'] else ''} ({row['params_1000_classes']:,}) "
            f"| {_paper(p['top1'], '.1f')} "
            f"| {'—' if is_base else _paper(p['delta_top1'], '+.1f')} | {_paper(p['top5'], '.1f')} |")
    return "\n".join(lines)


def _interval(paired):
    if paired is None or paired["low"] is None:
        return "n/a"
    return f"[{100 * paired['low']:+.2f}, {100 * paired['high']:+.2f}]"


def _paired_mean(paired, unpaired):
    """The mean of the per-seed differences (the centre of the interval beside it); the same as the
    difference of the means when both finished the same seeds, not when one has seeds the other lacks."""
    return paired["mean"] if paired and paired["n"] else unpaired


def _by_seed(paired):
    return ", ".join(_signed(d) for d in paired["differences"]) if paired and paired["differences"] else "n/a"


def _twice(std):
    return "n/a" if std is None else f"{100 * SPREAD_FACTOR * std:.2f}"


def _differences_section(table):
    rows = {v: r for v, r in table["variants"].items() if v != BASE}
    if BASE not in table["variants"] or not table["variants"][BASE]["top1"]:
        return ["No finished base run: no differences to base."]
    if len(table["seeds"]) < 2:
        return ["One seed per variant: the differences to base carry no error bars. A short run's "
                "seed-to-seed spread can be as large as these differences; rerun with `--seeds 3` "
                "(or more) to tell which differences are real."]
    counts = collections.Counter(r["delta_top1_verdict"] for r in rows.values())
    out = [f"Paired: every variant ran on the same seeds as base (same data order and random keys), so each "
           f"difference is taken seed by seed; Δ is the mean of the per-seed differences, with its "
           f"{100 * CONFIDENCE:g}% Student's t interval over seeds. A variant is above or below base when the "
           f"interval excludes 0. Here: {counts['above base']} above base, {counts['below base']} below base, "
           f"{counts['not resolved']} not resolved. Unpaired, beside it: the difference of the means against "
           f"{SPREAD_FACTOR:g} x sqrt(std_variant² + std_base²).", "",
           f"| Model | Δ Top-1 | {100 * CONFIDENCE:g}% interval | seed by seed | paired verdict "
           "| unpaired: 2 x combined std | exceeds it |", "|---|---:|---:|---|---|---:|---|"]
    for v, r in rows.items():
        exceeds = {True: "yes", False: "no", None: "n/a"}[r["delta_top1_exceeds_spread"]]
        out.append(f"| {model_name(v, table['model'])} | {_signed(_paired_mean(r['delta_top1_paired'], r['delta_top1']))} | "
                   f"{_interval(r['delta_top1_paired'])} | {_by_seed(r['delta_top1_paired'])} | "
                   f"{r['delta_top1_verdict'] or 'n/a'} | {_twice(r['delta_top1_combined_std'])} | {exceeds} |")
    return out


def _orderings_section(table):
    pairs = table["paper_orderings"]
    if not pairs:
        return ["No two finished variants that the paper puts in an order."]
    counts = collections.Counter(p["verdict"] for p in pairs)
    unpaired = collections.Counter(p["unpaired_verdict"] for p in pairs)
    if len(table["seeds"]) > 1:
        summary = (f"Of the {len(pairs)} pairs of these variants that the paper's top-1 puts in an order (ties left "
                   f"out), here: {counts['reproduced']} reproduced (the {100 * CONFIDENCE:g}% interval of the "
                   f"per-seed differences lies above 0), {counts['contradicted']} contradicted (it lies below "
                   f"0), {counts['not resolved']} not resolved (it holds 0). Unpaired (beyond twice the "
                   f"combined std): {unpaired['reproduced']} reproduced, {unpaired['contradicted']} contradicted, "
                   f"{unpaired['within the spread']} within the spread.")
        one_seed = counts["same direction"] + counts["opposite direction"] + counts["tied"]
        if one_seed:
            summary += (f" {one_seed} pairs share one finished seed only, no interval: {counts['same direction']} "
                        f"go the paper's way, {counts['opposite direction'] + counts['tied']} do not.")
    else:
        summary = (f"Of the {len(pairs)} pairs of these variants that the paper's top-1 puts in an order (ties left "
                   f"out), {counts['same direction']} go the same way here and "
                   f"{counts['opposite direction'] + counts['tied']} do not; with one seed there is "
                   "no spread to say which of these differences are real.")
    lines = [summary, "", f"| Paper: higher > lower | Paper Δ Top-1 | Our Δ Top-1 | {100 * CONFIDENCE:g}% interval "
             "| Verdict | 2 x combined std | Unpaired verdict |", "|---|---:|---:|---:|---|---:|---|"]
    for p in pairs:
        lines.append(f"| {model_name(p['higher'], table['model'])} > {model_name(p['lower'], table['model'])} "
                     f"| {p['paper_delta_top1']:+.1f} | {_signed(_paired_mean(p['paired'], p['delta_top1']))} | {_interval(p['paired'])} "
                     f"| {p['verdict']} | {_twice(p['combined_std'])} | {p['unpaired_verdict'] or 'n/a'} |")
    return lines


def _cost_section(table):
    lines = ["| Model | images/s | seconds per run | peak memory |", "|---|---:|---:|---:|"]
    for v, row in table["variants"].items():
        speed = row["images_per_s_mean"]
        secs = _present(row["seconds"])
        if row["peak_bytes_in_use"]:
            memory = _mib(max(_present(row["peak_bytes_in_use"]))) + " (device)"
        elif row["host_peak_rss_bytes"]:
            memory = _mib(max(_present(row["host_peak_rss_bytes"]))) + " (host RSS)"
        else:
            memory = "n/a"
        lines.append(f"| {row['model_name']} | {'n/a' if not speed else f'{speed:,.1f}'} "
                     f"| {'n/a' if not secs else f'{_mean(secs):,.0f}'} | {memory} |")
    return lines


def markdown(table):
    out = [f"# {table['title']}", "", "Recipe: " + _recipe_line(table), "",
           "Top-1 / Top-5: eval accuracy in percent" + (" (mean ± sample std over seeds)" if len(table["seeds"]) > 1
                                                        else " (one seed)")
           + "; Δ: difference to base in percentage points; #Params: exact trainable count of the network "
           f"trained here ({table['num_classes']} classes). Paper columns: ImageNet, 350 epochs at 224x224; "
           "in brackets our exact count of the same network with the 1000-class head.", "",
           markdown_table(table), "", "## Differences to base", ""]
    out += _differences_section(table)
    out += ["", "## Against the paper's orderings", ""] + _orderings_section(table)
    out += ["", "## Cost", ""] + _cost_section(table)
    notes = list(table["notes"])
    for f in table["failed"]:
        notes.append(f"{f['variant']} seed {f['seed']} did not finish: {f['error']}")
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ chart
class _ScatterPanel(Panel):
    """plot.Panel with real-valued axes and our own axis labels (plot's axes() is per-step)."""

    def axes(self, xs, ys, xlabel, ylabel):
        self.xlo, self.xhi = padded_range(xs, pad=0.15)
        self.ylo, self.yhi = padded_range(ys, pad=0.12)
        x0, y0, x1, y1 = self.box
        d, small = self.draw, self.fonts["small"]
        ticks, step = nice_ticks(self.ylo, self.yhi, most=6)
        for v in ticks:
            if self.ylo <= v <= self.yhi:
                y = self.py(v)
                d.line([(x0, y), (x1, y)], fill=GRID)
                d.text((x0 - 6, y), format_tick(v, step), fill=TEXT, font=small, anchor="rm")
        ticks, step = nice_ticks(self.xlo, self.xhi, most=6)
        for v in ticks:
            if self.xlo <= v <= self.xhi:
                x = self.px(v)
                d.line([(x, y0), (x, y1)], fill=GRID)
                d.line([(x, y1), (x, y1 + 4)], fill=AXIS)
                d.text((x, y1 + 7), format_tick(v, step), fill=TEXT, font=small, anchor="ma")
        d.rectangle(self.box, outline=AXIS)
        d.text(((x0 + x1) / 2, y1 + 26), xlabel, fill=MUTED, font=small, anchor="ma")
        d.text((x0 + 4, y0 - 4), ylabel, fill=MUTED, font=small, anchor="ld")

    def error_bar(self, x, y, err, color):
        cx, top, bottom = self.px(x), self.py(y + err), self.py(y - err)
        self.draw.line([(cx, top), (cx, bottom)], fill=color, width=2)
        for yy in (top, bottom):
            self.draw.line([(cx - 5, yy), (cx + 5, yy)], fill=color, width=2)

    def hline(self, y, color, label):
        x0, _, x1, _ = self.box
        py = self.py(y)
        for sx in range(int(x0), int(x1), 12):  # dashed
            self.draw.line([(sx, py), (min(sx + 6, x1), py)], fill=color, width=1)
        self.draw.text((x0 + 4, py - 2), label, fill=color, font=self.fonts["small"], anchor="ld")

    def labels(self, points, errors=None):
        """Name each point, trying spots around it until the text overlaps no marker, error bar or
        earlier label. `errors`: the error-bar half-heights of the points, if any."""
        errors = errors or [0.0] * len(points)
        placed = [(self.px(x) - 7, self.py(y + e) - 7, self.px(x) + 7, self.py(y - e) + 7)
                  for (x, y, _, _), e in zip(points, errors)]
        x0, y0, x1, y1 = self.box
        font = self.fonts["small"]
        for x, y, text, color in points:
            cx, cy = self.px(x), self.py(y)
            w = self.draw.textlength(text, font=font)
            h = 14
            spots = [(cx + 8, cy - h / 2), (cx - 8 - w, cy - h / 2), (cx - w / 2, cy - 10 - h),
                     (cx - w / 2, cy + 10)]
            spots += [(sx, cy - h / 2 + k * dy) for k in range(1, 6) for dy in (h + 2, -(h + 2))
                      for sx in (cx + 8, cx - 8 - w)]
            chosen = spots[0]
            for sx, sy in spots:
                box = (sx, sy, sx + w, sy + h)
                inside = box[0] >= x0 + 2 and box[2] <= x1 - 2 and box[1] >= y0 + 2 and box[3] <= y1 - 2
                if inside and not any(_overlap(box, b) for b in placed):
                    chosen = (sx, sy)
                    break
            box = (chosen[0], chosen[1], chosen[0] + w, chosen[1] + h)
            placed.append(box)
            self.draw.text((chosen[0], chosen[1]), text, fill=color, font=font)


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _color(variant, variants):
    own = [v for v in variants if v not in _COLORS]
    return _COLORS.get(variant) or _OWN_COLORS[own.index(variant) % len(_OWN_COLORS)]


def _darker(color):
    return tuple(int(c * 0.7) for c in color)


def plot_table(table, path):
    """Top-1 against parameters: ours (error bars: ±1 std over seeds) beside the paper's. Atomic write."""
    image, draw, fonts = new_figure(CHART_SIZE, "SE ablation (Table II): top-1 accuracy vs parameters")
    w, h = CHART_SIZE
    rows = table["variants"]
    multi = len(table["seeds"]) > 1
    top = 44
    foot = 24

    ours = _ScatterPanel(draw, (0, top, w // 2, h - foot),
                         f"ours: {table['num_classes']} classes, {len(table['seeds'])} seed{'s' if multi else ''}", fonts)
    pts = [(v, r["params"] / 1e6, 100 * r["top1_mean"], 100 * (r["top1_std"] or 0.0) if multi else 0.0)
           for v, r in rows.items() if r["top1_mean"] is not None and r["params"] is not None]
    if pts:
        ours.axes([p[1] for p in pts], [p[2] + p[3] for p in pts] + [p[2] - p[3] for p in pts],
                  "parameters (millions)", "top-1 (%)")
        if BASE in rows and rows[BASE]["top1_mean"] is not None:
            ours.hline(100 * rows[BASE]["top1_mean"], MUTED, "base")
        for v, x, y, err in pts:
            if err:
                ours.error_bar(x, y, err, _color(v, rows))
            ours.markers([(x, y)], _color(v, rows), r=6)
        ours.labels([(x, y, v, _darker(_color(v, rows))) for v, x, y, _ in pts], [e for *_, e in pts])
    else:
        ours.empty("no finished runs")

    paper = _ScatterPanel(draw, (w // 2, top, w, h - foot), "paper: ImageNet, 1000 classes", fonts)
    ppts = [(v, r["paper"]["params_m"], r["paper"]["top1"]) for v, r in rows.items() if r["paper"]]
    if ppts:
        paper.axes([p[1] for p in ppts], [p[2] for p in ppts], "parameters (millions)", "top-1 (%)")
        if BASE in rows:
            paper.hline(PAPER_TABLE2[BASE][1], MUTED, "base")
        for v, x, y in ppts:
            paper.markers([(x, y)], _COLORS[v], r=6)
        paper.labels([(x, y, v, _darker(_COLORS[v])) for v, x, y in ppts])
    else:
        paper.empty("no variant from the paper")
    note = ("error bars: ±1 sample std over seeds" if multi else
            "one seed per variant: no error bars") + "; dashed line: base"
    draw.text((w / 2, h - 6), note, fill=MUTED, font=fonts["small"], anchor="md")
    return save_png(image, path)


# ------------------------------------------------------------------ files
def write_report(table, directory):
    """table2.json, table2.md and table2.png in `directory`; returns their paths."""
    paths = {k: os.path.join(directory, f"table2.{k}") for k in ("json", "md", "png")}
    write_json(paths["json"], table)
    atomic_write(paths["md"], lambda f: f.write(markdown(table)))
    plot_table(table, paths["png"])
    return paths


assert set(_COLORS) == set(VARIANTS) == set(PAPER_TABLE2)
