"""Charts drawn with Pillow alone: the canvas (panels, ticks, colours) and the training curves."""
from .curves import plot_metrics

__all__ = ["plot_metrics"]
