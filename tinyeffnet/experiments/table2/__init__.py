"""The SE ablation's report: the paper's Table II beside ours, as JSON, Markdown and a PNG.

    table.py      build_table(runs, ...): one JSON-ready object of the runs' numbers and verdicts
    markdown.py   markdown(table), markdown_table(table)
    chart.py      plot_table(table, path)

`write_report(table, directory)` writes table2.json, table2.md and table2.png. Every variant
is trained on the same seeds (same data order and random keys), so each difference is
judged on the per-seed differences: their mean with a 95% Student's t interval over seeds
(tinyeffnet.experiments.paired), and a verdict from the interval. The unpaired figures
(each variant's own std, and whether the difference exceeds twice the combined std) stand
beside them.
"""
import os

from ..._files import atomic_write, write_json
from .chart import plot_table
from .markdown import markdown, markdown_table
from .table import BASE, block_figures, build_table, paper_name, paper_orderings, parameter_counts


def write_report(table, directory):
    """table2.json, table2.md and table2.png in `directory`; returns their paths."""
    paths = {k: os.path.join(directory, f"table2.{k}") for k in ("json", "md", "png")}
    write_json(paths["json"], table)
    atomic_write(paths["md"], lambda f: f.write(markdown(table)))
    plot_table(table, paths["png"])
    return paths


__all__ = ["BASE", "build_table", "markdown", "markdown_table", "plot_table", "write_report", "paper_name",
           "paper_orderings", "parameter_counts", "block_figures"]
