"""Training curves from metrics.jsonl as one PNG, drawn with Pillow alone (no matplotlib).

Four panels against the training step: loss (train, smoothed when noisy, plus eval loss
per epoch), learning rate, accuracy (train top-1 per logged step, eval top-1/top-5 per
epoch) and throughput. Any key may be missing from any record; non-finite values are
skipped, so a run that diverged still plots up to the divergence.
"""
import json
import math
import os
import uuid

from PIL import Image, ImageDraw, ImageFont

SIZE = (1200, 800)
_BG, _AXIS, _GRID, _TEXT, _MUTED = "white", (60, 60, 60), (225, 225, 225), (20, 20, 20), (130, 130, 130)
_BLUE, _LIGHT_BLUE = (31, 119, 180), (174, 199, 232)
_ORANGE, _GREEN, _RED, _PURPLE = (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)
_LIGHT_RED = (245, 180, 180)


def read_metrics(path):
    """The records of a metrics.jsonl file; unparsable lines (a crash mid-write) are skipped."""
    records = []
    with open(path, "rb") as f:  # bytes: a line cut inside a UTF-8 sequence must not raise
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:  # includes UnicodeDecodeError
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one small bitmap font only
        return ImageFont.load_default()


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


def _nice_ticks(lo, hi, most=6, integer=False):
    """Round tick values (1, 2, 2.5, 5 times a power of ten) covering [lo, hi]."""
    span = hi - lo
    magnitude = 10 ** math.floor(math.log10(span / most))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if span / (m * magnitude) <= most)
    if integer:  # steps are whole numbers: no 2.5 or 0.1 ticks
        step = max(1, round(step)) if step != 2.5 else 2
    first = math.ceil(lo / step - 1e-9)
    ticks = [k * step for k in range(first, first + most + 2) if k * step <= hi + step * 1e-9]
    return ticks, step


def _fmt(v, step):
    """A tick label with as many decimals as the tick spacing needs."""
    if abs(v) >= 10_000 and step >= 1000:
        return f"{v / 1000:g}k"
    decimals = len(f"{step:.12f}".rstrip("0").split(".")[1])
    if decimals > 4:  # tiny learning rates
        return f"{v:.1e}"
    return f"{v:.{decimals}f}"


def _range(values, pad=0.05, floor_zero=False):
    lo, hi = min(values), max(values)
    if lo == hi:  # a single point or a flat line: give it room
        d = abs(lo) * 0.1 or 1.0
        lo, hi = lo - d, hi + d
    else:
        d = (hi - lo) * pad
        lo, hi = lo - d, hi + d
    if floor_zero and min(values) >= 0:
        lo = max(lo, 0.0)
    return lo, hi


class _Panel:
    """One axes box: maps data to pixels and draws ticks, grid, lines, markers, legend."""

    def __init__(self, draw, box, title, fonts):
        self.draw, self.fonts = draw, fonts
        x0, y0, x1, y1 = box
        self.box = (x0 + 78, y0 + 34, x1 - 24, y1 - 46)  # room for tick labels and title
        self.legend = []
        draw.text(((x0 + x1) / 2 + 27, y0 + 8), title, fill=_TEXT, font=fonts["title"], anchor="ma")

    def axes(self, xs, ys, percent=False, floor_zero=False):
        self.xlo, self.xhi = _range(xs, pad=0.02) if min(xs) < max(xs) else (xs[0] - 1, xs[0] + 1)
        if min(xs) >= 0:
            self.xlo = max(self.xlo, 0.0)
        self.ylo, self.yhi = _range(ys, floor_zero=floor_zero)
        x0, y0, x1, y1 = self.box
        d, small = self.draw, self.fonts["small"]
        yticks, ystep = _nice_ticks(self.ylo, self.yhi, most=6)
        for v in yticks:
            y = self.py(v)
            d.line([(x0, y), (x1, y)], fill=_GRID)
            d.text((x0 - 6, y), _fmt(v, ystep) + ("%" if percent else ""), fill=_TEXT, font=small, anchor="rm")
        xticks, xstep = _nice_ticks(self.xlo, self.xhi, most=6, integer=True)
        for v in xticks:
            x = self.px(v)
            d.line([(x, y0), (x, y1)], fill=_GRID)
            d.line([(x, y1), (x, y1 + 4)], fill=_AXIS)
            d.text((x, y1 + 7), _fmt(v, xstep), fill=_TEXT, font=small, anchor="ma")
        d.rectangle(self.box, outline=_AXIS)
        d.text(((x0 + x1) / 2, y1 + 26), "step", fill=_MUTED, font=small, anchor="ma")

    def empty(self, message="no data"):
        d = self.draw
        d.rectangle(self.box, outline=_GRID)
        x0, y0, x1, y1 = self.box
        d.text(((x0 + x1) / 2, (y0 + y1) / 2), message, fill=_MUTED, font=self.fonts["small"], anchor="mm")

    def px(self, x):
        x0, _, x1, _ = self.box
        return x0 + (x - self.xlo) / (self.xhi - self.xlo) * (x1 - x0)

    def py(self, y):
        _, y0, _, y1 = self.box
        return y1 - (y - self.ylo) / (self.yhi - self.ylo) * (y1 - y0)

    def line(self, points, color, label=None, width=2):
        pixels = [(self.px(x), self.py(y)) for x, y in points]
        if len(pixels) == 1:  # a line needs two points: show the one we have
            self.markers(points, color)
        elif pixels:
            self.draw.line(pixels, fill=color, width=width, joint="curve")
        if label:
            self.legend.append((label, color, "line"))

    def markers(self, points, color, label=None, r=4):
        for x, y in points:
            cx, cy = self.px(x), self.py(y)
            self.draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color, outline="white")
        if label:
            self.legend.append((label, color, "marker"))

    def draw_legend(self, corner="top-right"):
        if not self.legend:
            return
        d, font = self.draw, self.fonts["small"]
        row, width = 20, max(int(d.textlength(t, font=font)) for t, _, _ in self.legend) + 44
        height = row * len(self.legend) + 8
        x0, y0, x1, y1 = self.box
        lx = x1 - width - 8
        ly = y0 + 8 if corner == "top-right" else y1 - height - 8
        d.rectangle((lx, ly, lx + width, ly + height), fill=(255, 255, 255), outline=_GRID)
        for i, (text, color, style) in enumerate(self.legend):
            cy = ly + 4 + row * i + row / 2
            if style == "line":
                d.line([(lx + 8, cy), (lx + 30, cy)], fill=color, width=3)
            else:
                d.ellipse((lx + 15, cy - 4, lx + 23, cy + 4), fill=color)
            d.text((lx + 36, cy), text, fill=_TEXT, font=font, anchor="lm")


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
    _noisy_line(panel, train, _BLUE, _LIGHT_BLUE, "train" if train else None)
    panel.markers(evals, _ORANGE, "eval (per epoch)" if evals else None)
    panel.draw_legend("top-right")


def _single_panel(panel, records, key, color, faint=None, floor_zero=False):
    points = _series(records, "step", key)
    if not points:
        return panel.empty()
    panel.axes([s for s, _ in points], [v for _, v in points], floor_zero=floor_zero)
    if faint:
        _noisy_line(panel, points, color, faint)
    else:
        panel.line(points, color)


def _accuracy_panel(panel, records):
    series = [(_series(records, "step", "top1"), _BLUE, "train top-1", "noisy"),
              (_series(records, "epoch", "eval_top1"), _ORANGE, "eval top-1", "marker"),
              (_series(records, "epoch", "eval_top5"), _GREEN, "eval top-5", "marker")]
    values = [v for points, *_ in series for _, v in points]
    if not values:
        return panel.empty()
    scale = 100.0 if max(values) <= 1.0 else 1.0  # fractions are shown as percentages
    series = [([(s, v * scale) for s, v in points], *rest) for points, *rest in series]
    allp = [p for points, *_ in series for p in points]
    panel.axes([s for s, _ in allp], [v for _, v in allp], percent=scale == 100.0, floor_zero=True)
    for points, color, label, style in series:
        if points and style == "noisy":
            _noisy_line(panel, points, color, _LIGHT_BLUE, label)
        elif points:
            panel.markers(points, color, label)
    panel.draw_legend("bottom-right")


def plot_metrics(records, path, title=""):
    """Draw training curves from metrics records into a PNG at `path` (written atomically)."""
    records = [r for r in records if isinstance(r, dict)]
    image = Image.new("RGB", SIZE, _BG)
    draw = ImageDraw.Draw(image)
    fonts = {"small": _font(13), "title": _font(16), "figure": _font(20)}
    w, h = SIZE
    top = 44
    draw.text((w / 2, 12), title or "training curves", fill=_TEXT, font=fonts["figure"], anchor="ma")
    half_w, half_h = w // 2, (h - top) // 2
    cells = [(x, top + y, x + half_w, top + y + half_h) for y in (0, half_h) for x in (0, half_w)]
    _loss_panel(_Panel(draw, cells[0], "loss", fonts), records)
    _single_panel(_Panel(draw, cells[1], "learning rate", fonts), records, "lr", _PURPLE, floor_zero=True)
    _accuracy_panel(_Panel(draw, cells[2], "accuracy", fonts), records)
    _single_panel(_Panel(draw, cells[3], "throughput (images/s)", fonts), records,
                  "images_per_s", _RED, faint=_LIGHT_RED, floor_zero=True)

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
