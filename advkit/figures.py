"""Matplotlib figures without pyplot: no global state, no backend switched for the user, no display
needed; matplotlib is imported with the first figure, not with advkit."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(**options: Any) -> Figure:
    """A matplotlib figure on its own Agg canvas (``options``: Figure's, e.g. figsize, dpi)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**options)
    FigureCanvasAgg(fig)
    return fig
