"""Table II as a chart: top-1 against parameters, ours beside the paper's."""
from ...model import PAPER_TABLE2, VARIANTS
from ...plotting.canvas import (AXIS, BLUE, GREEN, GRID, MUTED, ORANGE, PURPLE, RED, TEXT, Panel, format_tick,
                                new_figure, nice_ticks, padded_range, save_png)
from .table import BASE

CHART_SIZE = (1200, 620)
_COLORS = {"base": BLUE, "seend@noskip": (255, 187, 120), "seend@hasskip": ORANGE, "seend@all": RED,
           "nose@noskip": (152, 223, 138), "nose@hasskip": GREEN, "nose@all": PURPLE}
_OWN_COLORS = ((23, 190, 207), (227, 119, 194), (140, 86, 75), (188, 189, 34))  # variants not in the paper


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

    def interval(self, x, low, high, color):
        cx, top, bottom = self.px(x), self.py(high), self.py(low)
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
    """Each variant's top-1 difference to base against its parameters: ours (the mean of the
    per-seed differences, bars: its 95% interval over seeds) beside the paper's, both against
    base's 0. Differences, not accuracies: a zoomed accuracy axis makes seed noise look like a
    result, while an interval that holds 0 says plainly that nothing was resolved. Atomic write."""
    image, draw, fonts = new_figure(CHART_SIZE, "SE ablation (Table II): top-1 difference to base vs parameters")
    w, h = CHART_SIZE
    rows = table["variants"]
    multi = len(table["seeds"]) > 1
    top, foot = 44, 24

    ours = _ScatterPanel(draw, (0, top, w // 2, h - foot),
                         f"ours: {table['num_classes']} classes, {len(table['seeds'])} seed{'s' if multi else ''}", fonts)
    pts = []
    for v, r in rows.items():
        if r["params"] is None or r["top1_mean"] is None:
            continue
        paired = r["delta_top1_paired"] or {}
        mean = 0.0 if v == BASE else paired.get("mean") if paired.get("n") else r["delta_top1"]
        if mean is None:
            continue
        low, high = (paired.get("low"), paired.get("high")) if v != BASE else (None, None)
        pts.append((v, r["params"] / 1e6, 100 * mean, None if low is None else (100 * low, 100 * high)))
    if pts:
        ends = [y for _, _, y, _ in pts] + [e for *_, bar in pts if bar for e in bar] + [0.0]
        ours.axes([p[1] for p in pts], ends, "parameters (millions)", "vs base (points)")
        ours.hline(0.0, MUTED, "base")
        for v, x, y, bar in pts:
            if bar:
                ours.interval(x, bar[0], bar[1], _color(v, rows))
            ours.markers([(x, y)], _color(v, rows), r=6)
        ours.labels([(x, y, v, _darker(_color(v, rows))) for v, x, y, _ in pts],
                    [0.0 if not bar else max(abs(bar[0] - y), abs(bar[1] - y)) for _, _, y, bar in pts])
    else:
        ours.empty("no finished runs")

    paper = _ScatterPanel(draw, (w // 2, top, w, h - foot), "paper: ImageNet, one run each", fonts)
    ppts = [(v, r["paper"]["params_m"], r["paper"]["delta_top1"]) for v, r in rows.items() if r["paper"]]
    if ppts:
        paper.axes([p[1] for p in ppts], [p[2] for p in ppts] + [0.0], "parameters (millions)",
                   "vs base (points)")
        paper.hline(0.0, MUTED, "base")
        for v, x, y in ppts:
            paper.markers([(x, y)], _COLORS[v], r=6)
        paper.labels([(x, y, v, _darker(_COLORS[v])) for v, x, y in ppts])
    else:
        paper.empty("no variant from the paper")
    note = ("bars: 95% interval of the per-seed differences to base (an interval holding 0 resolves nothing)"
            if multi else "one seed per variant: no interval, so no difference here is resolved")
    draw.text((w / 2, h - 6), note, fill=MUTED, font=fonts["small"], anchor="md")
    return save_png(image, path)


assert set(_COLORS) == set(VARIANTS) == set(PAPER_TABLE2)
