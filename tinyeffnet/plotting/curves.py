"""Training curves from metrics.jsonl records as one PNG.

Four panels against the training step: loss (train, smoothed when noisy, plus eval loss
per epoch), learning rate, accuracy (train top-1 per logged step, eval top-1/top-5 per
epoch) and throughput. Any key may be missing from any record; non-finite values are
skipped, so a run that diverged still plots up to the divergence.
"""
import math

from .canvas import BLUE, GREEN, LIGHT_BLUE, LIGHT_RED, ORANGE, PURPLE, RED, Panel, new_figure, save_png

SIZE = (1200, 800)


def _finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _series(records, kind, key):
    """(step, value) pairs of one metric, in step order, finite values only."""
    points = [(r["step"], r[key]) for r in records
              if r.get("kind") == kind and _finite(r.get("step")) and _finite(r.get(key))]
    return sorted(points)


def _smooth(points, window):
    """Trailing running mean over `window` points (cumulative sums: linear time)."""
    out, total, values = [], 0.0, [v for _, v in points]
    for i, (s, v) in enumerate(points):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append((s, total / min(i + 1, window)))
    return out


def _noisy_line(panel, points, color, faint, label=None):
    """Per-step metrics are noisy: a faint raw curve under a running mean once there are many."""
    if len(points) > 50:
        panel.line(points, faint, label and f"{label} (raw)", width=1)
        panel.line(_smooth(points, max(2, len(points) // 50)), color, label and f"{label} (smoothed)")
    else:
        panel.line(points, color, label)


def _loss_panel(panel, records):
    train, evals = _series(records, "step", "loss"), _series(records, "epoch", "eval_loss")
    if not train and not evals:
        return panel.empty()
    panel.axes([s for s, _ in train + evals], [v for _, v in train + evals], floor_zero=True)
    _noisy_line(panel, train, BLUE, LIGHT_BLUE, "train" if train else None)
    panel.markers(evals, ORANGE, "eval (per epoch)" if evals else None)
    panel.draw_legend("auto")


def _single_panel(panel, records, key, color, faint=None, floor_zero=False):
    points = _series(records, "step", key)
    if not points:
        return panel.empty()
    panel.axes([s for s, _ in points], [v for _, v in points], floor_zero=floor_zero)
    if faint:
        _noisy_line(panel, points, color, faint)
    else:
        panel.line(points, color)
    if len(points) <= 12:  # a short run: show where the few measurements are
        panel.markers(points, color)


def _accuracy_panel(panel, records):
    series = [(_series(records, "step", "top1"), BLUE, "train top-1", "noisy"),
              (_series(records, "epoch", "eval_top1"), ORANGE, "eval top-1", "marker"),
              (_series(records, "epoch", "eval_top5"), GREEN, "eval top-5", "marker")]
    values = [v for points, *_ in series for _, v in points]
    if not values:
        return panel.empty()
    scale = 100.0 if max(values) <= 1.0 else 1.0  # fractions are shown as percentages
    series = [([(s, v * scale) for s, v in points], *rest) for points, *rest in series]
    allp = [p for points, *_ in series for p in points]
    panel.axes([s for s, _ in allp], [v for _, v in allp], percent=scale == 100.0, floor_zero=True)
    for points, color, label, style in series:
        if points and style == "noisy":
            _noisy_line(panel, points, color, LIGHT_BLUE, label)
        elif points:
            panel.markers(points, color, label)
    panel.draw_legend("auto")


def plot_metrics(records, path, title=""):
    """Draw training curves from metrics records into a PNG at `path` (written atomically)."""
    records = [r for r in records if isinstance(r, dict)]
    image, draw, fonts = new_figure(SIZE, title or "training curves")
    w, h = SIZE
    top = 44
    half_w, half_h = w // 2, (h - top) // 2
    cells = [(x, top + y, x + half_w, top + y + half_h) for y in (0, half_h) for x in (0, half_w)]
    _loss_panel(Panel(draw, cells[0], "loss", fonts), records)
    _single_panel(Panel(draw, cells[1], "learning rate", fonts), records, "lr", PURPLE, floor_zero=True)
    _accuracy_panel(Panel(draw, cells[2], "accuracy", fonts), records)
    _single_panel(Panel(draw, cells[3], "throughput (images/s)", fonts), records,
                  "images_per_s", RED, faint=LIGHT_RED, floor_zero=True)
    return save_png(image, path)
