"""General charts as Pillow images: line charts (optionally log-log) and horizontal bar charts.

A chart is one or more panels side by side; each panel is a dict. `line_chart` panels:
title, series (a list of `Series`), xlabel, ylabel, xlog, ylog, legend ("top-right" or
"bottom-right"); `bar_chart` panels: title, labels, values, color, log. Both return the
image; `save_png` (canvas) writes it.
"""
import math
from dataclasses import dataclass

from .canvas import AXIS, BLUE, GREEN, MUTED, ORANGE, PURPLE, RED, TEXT, Panel, new_figure

PALETTE = (BLUE, ORANGE, GREEN, RED, PURPLE, (140, 86, 75), (227, 119, 194), (23, 190, 207))


@dataclass
class Series:
    """One curve: (x, y) points, a legend label, a colour (default: the palette in order) and a
    style: "line", "dashed" or "markers"."""
    points: list
    label: str = None
    color: tuple = None
    style: str = "line"
    width: int = 2


def _grid_cells(count, size, columns, top):
    columns = columns or count
    rows = math.ceil(count / columns)
    w, h = size
    cw, ch = w // columns, (h - top) // rows
    return [(c * cw, top + r * ch, (c + 1) * cw, top + (r + 1) * ch) for r in range(rows) for c in range(columns)]


def _dashed(panel, points, color, width, on=8, off=6):
    """A dashed polyline: dashes follow the path length, however dense its points."""
    pixels = [(panel.px(x), panel.py(y)) for x, y in points]
    travelled = 0.0  # along the current dash or gap
    drawing = True
    for (ax, ay), (bx, by) in zip(pixels, pixels[1:]):
        length = math.hypot(bx - ax, by - ay)
        done = 0.0
        while done < length:
            step = min(length - done, (on if drawing else off) - travelled)
            if drawing:
                t0, t1 = done / length, (done + step) / length
                panel.draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                                fill=color, width=width)
            done += step
            travelled += step
            if travelled >= (on if drawing else off) - 1e-9:
                drawing, travelled = not drawing, 0.0


def line_chart(panels, title=None, size=None, columns=None):
    """One image with a line panel per dict in `panels` (see the module docstring)."""
    size = size or (560 * min(len(panels), columns or len(panels)), 420 * math.ceil(len(panels) / (columns or len(panels))))
    image, draw, fonts = new_figure(size, title)
    for spec, cell in zip(panels, _grid_cells(len(panels), size, columns, 44 if title else 4)):
        panel = Panel(draw, cell, spec.get("title", ""), fonts)
        series = [s for s in spec["series"] if s.points]
        xlog, ylog = spec.get("xlog", False), spec.get("ylog", False)
        points = [(x, y) for s in series for x, y in s.points if (x > 0 or not xlog) and (y > 0 or not ylog)]
        if not points:
            panel.empty()
            continue
        marks_y = [y for y, _ in spec.get("hlines", ()) if y > 0 or not ylog]  # reference lines stay in view
        panel.axes([x for x, _ in points], [y for _, y in points] + marks_y, xlabel=spec.get("xlabel", ""),
                   ylabel=spec.get("ylabel"), xlog=xlog, ylog=ylog, integer_x=spec.get("integer_x", False),
                   floor_zero=spec.get("floor_zero", False))
        for i, s in enumerate(series):
            color = s.color or PALETTE[i % len(PALETTE)]
            kept = [(x, y) for x, y in s.points if (x > 0 or not xlog) and (y > 0 or not ylog)]
            if s.style == "markers":
                panel.markers(kept, color, s.label)
            elif s.style == "dashed":
                _dashed(panel, kept, color, s.width)
                if s.label:
                    panel.legend.append((s.label, color, "line"))
            else:
                panel.line(kept, color, s.label, width=s.width)
        for x, text in spec.get("vlines", ()):  # marked x positions, e.g. a minimum
            px = panel.px(x)
            _, y0, _, y1 = panel.box
            draw.line([(px, y0), (px, y1)], fill=MUTED, width=1)
            draw.text((px + 4, y0 + 4), text, fill=MUTED, font=fonts["small"])
        for y, text in spec.get("hlines", ()):
            py = panel.py(y)
            x0, _, x1, _ = panel.box
            draw.line([(x0, py), (x1, py)], fill=MUTED, width=1)
            draw.text((x0 + 4, py - 2), text, fill=MUTED, font=fonts["small"], anchor="ld")
        panel.draw_legend(spec.get("legend", "top-right"))
    return image


def _bar_label(v):
    if isinstance(v, int) or float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:.3g}"


def bar_chart(panels, title=None, size=None, columns=None):
    """One image with a horizontal bar panel per dict in `panels`: labels on the left, one bar
    per label with its value at the end (log: a log10 length scale, for values spanning decades)."""
    rows = max(len(p["labels"]) for p in panels)
    size = size or (520 * min(len(panels), columns or len(panels)), max(240, 90 + 26 * rows))
    image, draw, fonts = new_figure(size, title)
    small = fonts["small"]
    for spec, (x0, y0, x1, y1) in zip(panels, _grid_cells(len(panels), size, columns, 44 if title else 4)):
        labels, values, color = spec["labels"], spec["values"], spec.get("color", BLUE)
        draw.text(((x0 + x1) / 2, y0 + 8), spec.get("title", ""), fill=TEXT, font=fonts["title"], anchor="ma")
        left = x0 + 16 + max(int(draw.textlength(str(t), font=small)) for t in labels)
        right = x1 - 16 - max(int(draw.textlength(_bar_label(v), font=small)) for v in values) - 8
        top, row = y0 + 36, min(40, (y1 - y0 - 50) / max(1, len(labels)))
        log = spec.get("log", False)
        scale = [math.log10(v) if log and v > 0 else v for v in values]
        lo = min(0.0, min(scale)) if not log else math.floor(min(s for s in scale)) - 0.3
        hi = max(scale) if max(scale) > lo else lo + 1
        for i, (label, v, s) in enumerate(zip(labels, values, scale)):
            cy = top + row * i + row / 2
            end = left + (s - lo) / (hi - lo) * (right - left)
            draw.rectangle((left, cy - row * 0.35, max(left + 1, end), cy + row * 0.35), fill=color)
            draw.text((left - 6, cy), str(label), fill=TEXT, font=small, anchor="rm")
            draw.text((max(left + 1, end) + 6, cy), _bar_label(v), fill=TEXT, font=small, anchor="lm")
        draw.line([(left, top - 4), (left, top + row * len(labels) + 4)], fill=AXIS)
        if spec.get("note"):
            draw.text(((x0 + x1) / 2, y1 - 6), spec["note"], fill=MUTED, font=small, anchor="md")
    return image


__all__ = ["Series", "line_chart", "bar_chart", "PALETTE"]
