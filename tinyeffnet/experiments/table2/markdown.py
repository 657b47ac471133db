"""Table II as Markdown: the comparison table, the differences to base with their paired
intervals, the paper's orderings, and the runs' cost (percentages, not fractions)."""
import collections

from ..paired import CONFIDENCE
from .table import BASE, SPREAD_FACTOR, mean_or_none, paired_mean, paper_name, present


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
            f"| {row['paper_name']} | {row['block_arch']} | {params} "
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
        out.append(f"| {paper_name(v, table['model'])} | {_signed(paired_mean(r['delta_top1_paired'], r['delta_top1']))} | "
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
        lines.append(f"| {paper_name(p['higher'], table['model'])} > {paper_name(p['lower'], table['model'])} "
                     f"| {p['paper_delta_top1']:+.1f} | {_signed(paired_mean(p['paired'], p['delta_top1']))} | {_interval(p['paired'])} "
                     f"| {p['verdict']} | {_twice(p['combined_std'])} | {p['unpaired_verdict'] or 'n/a'} |")
    return lines


def _cost_section(table):
    lines = ["| Model | images/s | seconds per run | peak memory |", "|---|---:|---:|---:|"]
    for v, row in table["variants"].items():
        speed = row["images_per_s_mean"]
        secs = present(row["seconds"])
        if row["peak_bytes_in_use"]:
            memory = _mib(max(present(row["peak_bytes_in_use"]))) + " (device)"
        elif row["host_peak_rss_bytes"]:
            memory = _mib(max(present(row["host_peak_rss_bytes"]))) + " (host RSS)"
        else:
            memory = "n/a"
        lines.append(f"| {row['paper_name']} | {'n/a' if not speed else f'{speed:,.1f}'} "
                     f"| {'n/a' if not secs else f'{mean_or_none(secs):,.0f}'} | {memory} |")
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
