"""Plots the runners write: the style-transfer loss curve.

Drawn with matplotlib's object API (``Figure`` + the Agg canvas), so no pyplot, no
backend switch and no change to the caller's matplotlib state; the user's matplotlibrc
is ignored inside the plot so that every machine draws the same picture.
"""
from __future__ import annotations

import math
from pathlib import Path

# 720 x 420 pixels.
WIDTH_INCHES, HEIGHT_INCHES, DPI = 7.2, 4.2, 100


class PlotError(RuntimeError):
    """The plot could not be drawn (matplotlib missing); the message says what to do."""


def draw_loss_curve(losses, path, title: str = "Style transfer: total loss per step",
                    xlabel: str = "step") -> Path:
    """Write the total loss against its index (log-scale y) as a 720x420 PNG at ``path``.

    losses: a sequence of floats, entry i = the total loss of step (or evaluation) i.
    Zero, negative and non-finite values cannot be drawn on a log scale and are left out.
    Returns the path written.
    """
    try:
        import matplotlib.style
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as error:
        raise PlotError(f"matplotlib is needed to draw the loss curve ({error}); run `source env.sh` "
                        "or `pip install 'matplotlib>=3.6'`") from None

    values = [float(v) for v in losses]
    points = [(i, v) for i, v in enumerate(values) if v > 0 and math.isfinite(v)]
    path = Path(path)
    with matplotlib.style.context("default"):
        figure = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
        canvas = FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        if points:
            steps, totals = zip(*points)
            axes.plot(steps, totals, color="tab:red", linewidth=1.5, marker="o" if len(points) == 1 else None)
            axes.set_yscale("log")
            axes.grid(True, which="both", alpha=0.3)
        else:
            axes.text(0.5, 0.5, "no positive finite loss to draw", ha="center", va="center",
                      transform=axes.transAxes)
        axes.set_xlim(0, max(len(values) - 1, 1))
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel(xlabel)
        axes.set_ylabel("total loss (log scale)")
        axes.set_title(title)
        figure.tight_layout()
        # The canvas writes the figure at its own size and dpi (savefig would apply the
        # user's savefig.* settings, e.g. a tight bounding box that changes the size).
        canvas.print_png(str(path))
    return path
