"""Charts with Pillow alone (no matplotlib): colours, fonts, tick rules, and `Panel`, one
axes box that maps data to pixels and draws grid, lines, markers and a legend.
"""
import math

from PIL import Image, ImageDraw, ImageFont

from .._files import atomic_write

BACKGROUND, AXIS, GRID, TEXT, MUTED = "white", (60, 60, 60), (225, 225, 225), (20, 20, 20), (130, 130, 130)
BLUE, LIGHT_BLUE = (31, 119, 180), (174, 199, 232)
ORANGE, GREEN, RED, PURPLE = (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)
LIGHT_RED = (245, 180, 180)


def font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one small bitmap font only
        return ImageFont.load_default()


def nice_ticks(lo, hi, most=6, integer=False):
    """Round tick values (1, 2, 2.5, 5 times a power of ten) covering [lo, hi]."""
    span = hi - lo
    magnitude = 10 ** math.floor(math.log10(span / most))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if span / (m * magnitude) <= most)
    if integer:  # steps are whole numbers: no 2.5 or 0.1 ticks
        step = max(1, round(step)) if step != 2.5 else 2
    first = math.ceil(lo / step - 1e-9)
    ticks = [k * step for k in range(first, first + most + 2) if k * step <= hi + step * 1e-9]
    return ticks, step


def format_tick(v, step):
    """A tick label with as many decimals as the tick spacing needs."""
    if abs(v) >= 10_000 and step >= 1000:
        return f"{v / 1000:g}k"
    decimals = len(f"{step:.12f}".rstrip("0").split(".")[1])
    if decimals > 4:  # tiny learning rates: as many significant digits as the spacing needs
        digits = max(1, math.floor(math.log10(abs(v))) - math.floor(math.log10(step))) if v else 1
        return f"{v:.{digits}e}"
    return f"{v:.{decimals}f}"


def _ticks(lo, hi, log, integer):
    """(position, label) of the ticks of one axis; positions are log10 values on a log axis."""
    if not log:
        ticks, step = nice_ticks(lo, hi, most=6, integer=integer)
        return [(v, format_tick(v, step)) for v in ticks]
    first, last = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
    every = max(1, math.ceil((last - first + 1) / 8))  # at most about 8 decades labelled
    return [(k, f"1e{k}" if k not in (0, 1) else str(10 ** k)) for k in range(first, last + 1, every)]


def padded_range(values, pad=0.05, floor_zero=False):
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


class Panel:
    """One axes box: maps data to pixels and draws ticks, grid, lines, markers, legend."""

    def __init__(self, draw, box, title, fonts):
        self.draw, self.fonts = draw, fonts
        x0, y0, x1, y1 = box
        self.box = (x0 + 78, y0 + 34, x1 - 24, y1 - 46)  # room for tick labels and title
        self.legend = []
        draw.text(((x0 + x1) / 2 + 27, y0 + 8), title, fill=TEXT, font=fonts["title"], anchor="ma")

    def axes(self, xs, ys, percent=False, floor_zero=False, xlabel="step", ylabel=None, xlog=False, ylog=False,
             integer_x=True):
        """Fit the axes to the data and draw ticks, grid and labels. The defaults are the training
        curves' (x: whole steps from 0); `xlog` / `ylog` put an axis on a log10 scale (values > 0)."""
        self.xlog, self.ylog = xlog, ylog
        xs, ys = [self._x(v) for v in xs], [self._y(v) for v in ys]
        self.xlo, self.xhi = padded_range(xs, pad=0.02) if min(xs) < max(xs) else (xs[0] - 1, xs[0] + 1)
        if min(xs) >= 0 and not xlog:
            self.xlo = max(self.xlo, 0.0)
        self.ylo, self.yhi = padded_range(ys, floor_zero=floor_zero and not ylog)
        x0, y0, x1, y1 = self.box
        d, small = self.draw, self.fonts["small"]
        for v, label in _ticks(self.ylo, self.yhi, ylog, False):
            y = y1 - (v - self.ylo) / (self.yhi - self.ylo) * (y1 - y0)
            d.line([(x0, y), (x1, y)], fill=GRID)
            d.text((x0 - 6, y), label + ("%" if percent else ""), fill=TEXT, font=small, anchor="rm")
        for v, label in _ticks(self.xlo, self.xhi, xlog, integer_x and not xlog):
            x = x0 + (v - self.xlo) / (self.xhi - self.xlo) * (x1 - x0)
            d.line([(x, y0), (x, y1)], fill=GRID)
            d.line([(x, y1), (x, y1 + 4)], fill=AXIS)
            d.text((x, y1 + 7), label, fill=TEXT, font=small, anchor="ma")
        d.rectangle(self.box, outline=AXIS)
        d.text(((x0 + x1) / 2, y1 + 26), xlabel, fill=MUTED, font=small, anchor="ma")
        if ylabel:
            d.text((x0 + 4, y0 - 4), ylabel, fill=MUTED, font=small, anchor="ld")

    def _x(self, x):
        return math.log10(x) if getattr(self, "xlog", False) else x

    def _y(self, y):
        return math.log10(y) if getattr(self, "ylog", False) else y

    def empty(self, message="no data"):
        d = self.draw
        d.rectangle(self.box, outline=GRID)
        x0, y0, x1, y1 = self.box
        d.text(((x0 + x1) / 2, (y0 + y1) / 2), message, fill=MUTED, font=self.fonts["small"], anchor="mm")

    def px(self, x):
        x0, _, x1, _ = self.box
        return x0 + (self._x(x) - self.xlo) / (self.xhi - self.xlo) * (x1 - x0)

    def py(self, y):
        _, y0, _, y1 = self.box
        return y1 - (self._y(y) - self.ylo) / (self.yhi - self.ylo) * (y1 - y0)

    def _drawn(self, pixels):
        """Remember where data was drawn, so that an "auto" legend can keep off it."""
        if not hasattr(self, "drawn"):
            self.drawn = []
        self.drawn.extend(pixels)

    def line(self, points, color, label=None, width=2):
        pixels = [(self.px(x), self.py(y)) for x, y in points]
        self._drawn(pixels + [(a[0] + (b[0] - a[0]) * k / 8, a[1] + (b[1] - a[1]) * k / 8)  # along the segments too
                              for a, b in zip(pixels, pixels[1:]) for k in range(1, 8)])
        if len(pixels) == 1:  # a line needs two points: show the one we have
            self.markers(points, color)
        elif pixels:
            self.draw.line(pixels, fill=color, width=width, joint="curve")
        if label:
            self.legend.append((label, color, "line"))

    def markers(self, points, color, label=None, r=4):
        self._drawn([(self.px(x), self.py(y)) for x, y in points])
        for x, y in points:
            cx, cy = self.px(x), self.py(y)
            self.draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color, outline="white")
        if label:
            self.legend.append((label, color, "marker"))

    def draw_legend(self, corner="top-right"):
        """The legend box in a corner of the axes; "auto": the corner that covers the fewest
        drawn data points (ties: top-right, top-left, bottom-right, bottom-left)."""
        if not self.legend:
            return
        d, font = self.draw, self.fonts["small"]
        row, width = 20, max(int(d.textlength(t, font=font)) for t, _, _ in self.legend) + 44
        height = row * len(self.legend) + 8
        x0, y0, x1, y1 = self.box

        def place(corner):
            return (x0 + 8 if corner.endswith("left") else x1 - width - 8,
                    y0 + 8 if corner.startswith("top") else y1 - height - 8)

        if corner == "auto":
            def covered(c):
                lx, ly = place(c)
                return sum(lx - 6 <= px <= lx + width + 6 and ly - 6 <= py <= ly + height + 6
                           for px, py in getattr(self, "drawn", []))
            corner = min(("top-right", "top-left", "bottom-right", "bottom-left"), key=covered)
        lx, ly = place(corner)
        d.rectangle((lx, ly, lx + width, ly + height), fill=(255, 255, 255), outline=GRID)
        for i, (text, color, style) in enumerate(self.legend):
            cy = ly + 4 + row * i + row / 2
            if style == "line":
                d.line([(lx + 8, cy), (lx + 30, cy)], fill=color, width=3)
            else:
                d.ellipse((lx + 15, cy - 4, lx + 23, cy + 4), fill=color)
            d.text((lx + 36, cy), text, fill=TEXT, font=font, anchor="lm")




def new_figure(size, title=None):
    """A white image, its ImageDraw and the three font sizes charts use; the title on top."""
    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    fonts = {"small": font(13), "title": font(16), "figure": font(20)}
    if title:
        draw.text((size[0] / 2, 12), title, fill=TEXT, font=fonts["figure"], anchor="ma")
    return image, draw, fonts


def save_png(image, path):
    """Write a PNG atomically; returns the path."""
    return atomic_write(path, lambda f: image.save(f, format="PNG"), binary=True)
