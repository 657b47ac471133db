"""Table II's numbers: per variant, the exact parameter count, top-1/top-5 per seed, mean,
std, the difference to base seed by seed with its interval (tinyeffnet.experiments.paired),
the paper's figures, and every pair of variants the paper puts in an order with whether
ours reproduces it. Pure functions of finished runs: no training, no JAX.

Accuracies are fractions (0..1) here; the paper's figures are percentages (as printed).
"""
import math
import statistics

from ...model import PAPER_TABLE2, block_specs, build_model
from ..paired import CONFIDENCE, paired_difference, verdict as paired_verdict

BASE = "base"
SPREAD_FACTOR = 2.0  # a difference "exceeds the spread" when |delta| > 2 x combined std


def paper_name(variant, model="b0"):
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


def mean_or_none(values):
    return sum(values) / len(values) if values else None


def _std(values):
    """Sample standard deviation over seeds (n - 1); None for fewer than two runs."""
    return statistics.stdev(values) if len(values) > 1 else None


def present(values):
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
            paper_name=paper_name(v, model), block_arch=paper[3] if paper else block_figures(v),
            params=parameter_counts(v, model, num_classes, width, depth) if num_classes else None,
            params_1000_classes=parameter_counts(v, model, 1000, width, depth),
            seeds=[r["seed"] for r in rs], top1=top1, top5=top5,
            top1_mean=mean_or_none(top1), top1_std=_std(top1), top5_mean=mean_or_none(top5), top5_std=_std(top5),
            steps=[r.get("steps") for r in rs],
            images_per_s=speeds, images_per_s_mean=mean_or_none(present(speeds)),
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
                direction = paired_mean(paired, ours)
                verdict = "same direction" if direction > 0 else "opposite direction" if direction < 0 else "tied"
            out.append(dict(higher=high, lower=low, paper_delta_top1=round(paper, 2), delta_top1=ours,
                            paired=paired, verdict=verdict, combined_std=combined, unpaired_verdict=unpaired))
    return out


def paired_mean(paired, unpaired):
    """The mean of the per-seed differences (the centre of the interval beside it); the same as the
    difference of the means when both finished the same seeds, not when one has seeds the other lacks."""
    return paired["mean"] if paired and paired["n"] else unpaired
