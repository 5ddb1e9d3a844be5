"""Pictures: attention heatmaps and task figures (matplotlib, headless Agg backend)."""

from attnlab.viz.heatmaps import save_figure, show_heatmaps

__all__ = ["save_figure", "show_heatmaps"]
