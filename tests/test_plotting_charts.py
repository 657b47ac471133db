"""The general charts of tinyeffnet.plotting (line and bar charts, graphs and the autograd
tape, image grids, block diagrams, convolution windows): they draw something at a sensible
size for normal and edge-case input, and map data to pixels as they should."""
import math
import os
import subprocess
import sys

import pytest
from PIL import Image

from tinyeffnet import Tensor
from tinyeffnet.plotting import (Series, bar_chart, block_columns, conv_windows, draw_graph, draw_tape, image_grid,
                                 line_chart, record_tape)
from tinyeffnet.plotting.canvas import Panel, new_figure


def _drawn(image, size=None):
    assert isinstance(image, Image.Image)
    if size:
        assert image.size == size
    assert image.convert("L").getextrema()[0] < 128, "nothing dark was drawn"
    return image


def test_line_chart_linear_and_log_log():
    xs = [10 ** (-k / 2) for k in range(2, 20)]
    image = line_chart([
        dict(title="linear", xlabel="x", ylabel="y", series=[Series([(x, x * x) for x in range(10)], "x^2"),
                                                          Series([(0, 1), (9, 50)], "dashed", style="dashed"),
                                                          Series([(3, 9)], "one marker", style="markers")]),
        dict(title="log-log", xlog=True, ylog=True, hlines=[(1e-6, "a level")], vlines=[(1e-3, "a mark")],
             series=[Series([(x, x * x) for x in xs], "x^2"), Series([(x, 0.0) for x in xs], "zeros: dropped")])],
        "two panels", size=(900, 400))
    _drawn(image, (900, 400))


def test_line_chart_without_data_says_so():
    _drawn(line_chart([dict(title="empty", series=[Series([])]), dict(title="only zeros", ylog=True,
                                                                     series=[Series([(1, 0.0)])])]))


def test_log_axis_maps_decades_evenly():
    image, draw, fonts = new_figure((600, 400))
    panel = Panel(draw, (0, 0, 600, 400), "", fonts)
    panel.axes([1e-6, 1e-2], [1.0, 100.0], xlabel="eps", xlog=True, ylog=True)
    x0, x1, x2 = panel.px(1e-6), panel.px(1e-4), panel.px(1e-2)
    assert abs((x1 - x0) - (x2 - x1)) < 1e-9, "equal ratios are equal distances"
    assert panel.py(100.0) < panel.py(10.0) < panel.py(1.0), "y grows upwards"


def test_panel_axes_default_is_the_training_curves_step_axis():
    image, draw, fonts = new_figure((400, 300))
    panel = Panel(draw, (0, 0, 400, 300), "", fonts)
    panel.axes([0, 100], [0.0, 1.0])
    assert panel.xlo == 0.0 and not panel.xlog and not panel.ylog


def test_bar_chart_linear_and_log():
    image = bar_chart([dict(title="params", labels=["a", "bb", "ccc"], values=[1, 1000, 1_000_000]),
                       dict(title="log", labels=["a", "b"], values=[0.5, 5e6], log=True, note="log scale")],
                      "bars")
    _drawn(image)
    assert image.size[0] >= 1000


def test_draw_graph_puts_sources_left_of_their_consumers():
    nodes = [dict(id=i, lines=[i], kind="op" if i.startswith("f") else "box") for i in ("a", "b", "f1", "f2", "out")]
    edges = [("a", "f1"), ("b", "f1"), ("f1", "f2"), ("a", "f2"), ("f2", "out")]
    _drawn(draw_graph(nodes, edges, "a small graph"))


def test_tape_drawing_shows_values_and_gradients():
    a = Tensor(2.0, requires_grad=True)
    b = Tensor(-3.0, requires_grad=True)
    out = (a * b + a * a).sigmoid() * 3.0
    tape = record_tape(out, dict(a=a, b=b, out=out))
    assert sorted(tape.ops.values()) == ["Add", "Mul", "Mul", "Mul", "Sigmoid"]
    assert len(tape.tensors) == 8 and len(tape.leaves) == 3  # a, b and the constant 3.0
    out.backward()
    assert all(t.grad is not None for t in tape.tensors.values() if t.requires_grad), "intermediates kept grads"
    _drawn(draw_tape(tape, "the tape"))
    big = Tensor.normal(0, (3, 4), requires_grad=True)  # larger tensors are drawn by shape, small ones by value
    small = Tensor([[1.0, 2.0]], requires_grad=True)
    total = (big * big).sum() + (small * small).sum()
    drawing = record_tape(total)
    total.backward()
    _drawn(draw_tape(drawing))


def test_image_grid_of_gray_and_rgb_images():
    gray = [(i * 7) % 256 for i in range(5 * 6 * 6)]
    _drawn(image_grid(gray, (5, 6, 6, 1), [f"#{i}" for i in range(5)], columns=3, scale=5, title="gray"))
    rgb = [(i * 3) % 256 for i in range(2 * 4 * 4 * 3)]
    _drawn(image_grid(rgb, (2, 4, 4, 3), scale=10))
    with pytest.raises(ValueError, match="do not make images"):
        image_grid(rgb, (2, 4, 4, 2))


def test_block_columns_and_conv_windows():
    layers = [("in", "io"), ("1x1 conv", "conv"), ("BN", "bn"), ("3x3 dw", "dw"), ("SE", "se"), ("+", "add")]
    _drawn(block_columns([dict(title="with skip", layers=layers, skip=True),
                          dict(title="without", layers=layers[:-1])], "blocks"))
    values = [[4 * r + c + 1 for c in range(4)] for r in range(4)]
    image = conv_windows([dict(title="SAME", values=values, pad=((0, 1), (0, 1)), kernel=3, stride=2, notes=["y"]),
                          dict(title="VALID", values=values, pad=((0, 0), (0, 0)), kernel=2, stride=2)])
    _drawn(image)


def test_new_charts_run_with_numpy_blocked(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = (f"import sys; sys.modules['numpy'] = None; sys.path.insert(0, {root!r})\n"
              "from tinyeffnet.plotting import Series, line_chart, bar_chart, image_grid\n"
              "line_chart([dict(series=[Series([(1, 1), (10, 100)])], xlog=True, ylog=True)])\n"
              "bar_chart([dict(labels=['a'], values=[1])])\n"
              "image_grid([0] * 16, (1, 4, 4, 1))\n"
              "print('ok')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_log_ticks_thin_out_over_many_decades():
    from tinyeffnet.plotting.canvas import _ticks
    ticks = _ticks(-16, 0, True, False)
    assert 5 <= len(ticks) <= 9 and all(isinstance(k, int) for k, _ in ticks)
    assert dict(_ticks(-2, 1, True, False)) == {-2: "1e-2", -1: "1e-1", 0: "1", 1: "10"}
    assert math.isclose(_ticks(0, 1, False, False)[1][0], 0.2)
