"""Charts drawn with Pillow alone (no matplotlib, no numpy).

    canvas     colours, fonts, tick rules and `Panel`, one axes box (linear or log axes)
    curves     training curves from metrics.jsonl records
    charts     line charts (log-log too) and horizontal bar charts
    graph      small DAGs left to right, and autograd's tape as one (values and gradients)
    images     a grid of small images with labels (a batch of training data)
    diagrams   blocks as stacks of layers (the paper's Fig. 1), convolution windows

Chart functions return a PIL image (`canvas.save_png` writes one atomically), except
`plot_metrics`, which writes its PNG.
"""
from .charts import Series, bar_chart, line_chart
from .curves import plot_metrics
from .diagrams import block_columns, conv_windows
from .graph import draw_graph, draw_tape, record_tape
from .images import image_grid

__all__ = ["plot_metrics", "line_chart", "bar_chart", "Series", "draw_graph", "record_tape", "draw_tape",
           "image_grid", "block_columns", "conv_windows"]
