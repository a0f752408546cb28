"""The report's plots: matplotlib figures (Agg canvas, no pyplot state) saved as inline SVG with text as paths
(`svg.fonttype: path`), so a report needs no font files. matplotlib is imported here only, inside the
functions, so `import tunelab` stays light.

Every function returns an `<svg>` element as a string; ids inside it are salted with the plot's name, so
several plots on one page never share an id and the same data always gives the same bytes.
"""

from __future__ import annotations

import io
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["figure", "to_svg", "loss_plot", "metric_lines", "confusion_plot", "bars", "length_plot",
           "histogram_plot", "scatter_plot", "image_grid", "errorbar_plot", "curves_plot"]

_RC = {"svg.fonttype": "path", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
       "axes.grid": True, "grid.alpha": 0.3, "legend.frameon": False}


def figure(width: float = 7.0, height: float = 3.2, *, ncols: int = 1, nrows: int = 1) -> tuple[Any, Any]:
    """A figure on the Agg canvas and its axes (an array when ncols * nrows > 1)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=True)


def to_svg(fig: Any, name: str) -> str:
    """The figure as an inline `<svg>` (XML header and doctype dropped), ids salted with `name`."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"tunelab-{name}", "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "tunelab"})
    text = buffer.getvalue()
    return f'<div class="figure" data-plot="{name}">{text[text.index("<svg"):]}</div>'


def _integer_ticks(ax: Any) -> None:
    """Whole numbers on the x axis (epochs, steps)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _styled(draw: Any) -> Any:
    """Run `draw` (which builds and returns an svg string) under the report's rcParams."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        return draw()


def loss_plot(steps: Sequence[int], losses: Sequence[float], lrs: Sequence[float],
              val_steps: Sequence[int], val_losses: Sequence[float]) -> str:
    """Training loss per step (validation loss per epoch over it) and the learning rate below it."""
    def draw() -> str:
        fig, (top, bottom) = figure(7.5, 4.6, nrows=2)
        top.plot(steps, losses, lw=1, color="#3b6db3", label="train loss (per step)")
        if val_losses:
            top.plot(val_steps, val_losses, "o-", color="#d0602a", label="validation loss (per epoch)")
        top.set_ylabel("loss")
        top.legend()
        bottom.plot(steps, lrs, lw=1.2, color="#4a8f4a")
        bottom.set_xlabel("optimizer step")
        _integer_ticks(top)
        _integer_ticks(bottom)
        bottom.set_ylabel("learning rate")
        bottom.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        return to_svg(fig, "loss")
    return _styled(draw)


def metric_lines(x: Sequence[float], series: dict[str, Sequence[float]], *, name: str, xlabel: str,
                 best_x: Optional[float] = None, best_label: str = "best") -> str:
    """One line per metric over `x` (epochs), the best epoch marked with a dashed line."""
    def draw() -> str:
        fig, ax = figure(7.5, 3.4)
        for label, values in series.items():
            ax.plot(x, values, "o-", ms=3, label=label)
        _integer_ticks(ax)
        if best_x is not None:
            ax.axvline(best_x, ls="--", color="#c0392b", lw=1.2, label=best_label)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return to_svg(fig, name)
    return _styled(draw)


def confusion_plot(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """Counts and row-normalised shares side by side (rows: true class, columns: predicted)."""
    counts = np.asarray(matrix, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = min(11.0, 3.0 + 0.35 * len(labels))

    def draw() -> str:
        fig, axes = figure(2 * size, size * 0.9, ncols=2)
        for ax, values, title, fmt in ((axes[0], counts, "counts", "{:.0f}"), (axes[1], shares, "row-normalised", "{:.2f}")):
            ax.imshow(values, cmap="Blues", vmin=0)
            ax.set_title(title)
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
            ax.set_yticks(range(len(labels)), labels)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.grid(False)
            if len(labels) <= 20:
                top = values.max() or 1.0
                for (i, j), v in np.ndenumerate(values):
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7,
                            color="white" if v > 0.6 * top else "black")
        return to_svg(fig, "confusion")
    return _styled(draw)


def bars(categories: Sequence[str], series: dict[str, Sequence[float]], *, name: str, ylabel: str,
         log: bool = False) -> str:
    """Grouped bars: one group per category, one bar per series."""
    def draw() -> str:
        fig, ax = figure(max(5.0, min(12.0, 1.5 + 0.45 * len(categories) * max(1, len(series)))), 3.2)
        width = 0.8 / max(1, len(series))
        x = np.arange(len(categories))
        for k, (label, values) in enumerate(series.items()):
            ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=label)
        ax.set_xticks(x, categories, rotation=45 if len(categories) > 6 else 0, ha="right" if len(categories) > 6 else "center")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        if len(series) > 1:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return to_svg(fig, name)
    return _styled(draw)


def length_plot(length_counts: dict[str, Sequence[int]], max_length: int, shares: dict[str, float]) -> str:
    """Token-length histogram per split (counts per length, binned), the `max_length` cut as a line."""
    def draw() -> str:
        fig, ax = figure(7.5, 3.2)
        longest = max((len(c) for c in length_counts.values()), default=1)
        edges = np.unique(np.linspace(0, max(longest, max_length + 1), 41).astype(int))
        for split, counts in length_counts.items():
            lengths = np.repeat(np.arange(len(counts)), counts)
            ax.hist(lengths, bins=edges, histtype="step", lw=1.5,
                    label=f"{split} ({100 * shares.get(split, 0.0):.1f}% at the cut)")
        ax.axvline(max_length, color="#c0392b", ls="--", lw=1.2, label=f"max_length {max_length}")
        ax.set_xlabel("tokens per example")
        ax.set_ylabel("examples")
        ax.legend()
        return to_svg(fig, "lengths")
    return _styled(draw)


def histogram_plot(counts: Sequence[int], edges: Sequence[float], *, name: str, xlabel: str) -> str:
    def draw() -> str:
        fig, ax = figure(6.0, 3.0)
        ax.stairs(counts, edges, fill=True, alpha=0.7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("examples")
        return to_svg(fig, name)
    return _styled(draw)


def scatter_plot(true: Sequence[float], predicted: Sequence[float]) -> str:
    """Predicted against true values, with the y = x line."""
    def draw() -> str:
        fig, ax = figure(4.8, 4.4)
        ax.scatter(true, predicted, s=12, alpha=0.6)
        low = float(min(min(true), min(predicted)))
        high = float(max(max(true), max(predicted)))
        ax.plot([low, high], [low, high], "--", color="#888", lw=1, label="y = x")
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
        ax.legend()
        return to_svg(fig, "scatter")
    return _styled(draw)


def image_grid(images: np.ndarray, titles: Sequence[str]) -> str:
    """(N, H, W, 3) uint8 images in a grid of up to 8 columns, a title under each."""
    columns = min(8, len(images))
    rows = -(-len(images) // columns)

    def draw() -> str:
        fig, axes = figure(1.3 * columns, 1.5 * rows, ncols=columns, nrows=rows)
        for k, ax in enumerate(np.asarray(axes).reshape(-1)):
            ax.axis("off")
            if k < len(images):
                ax.imshow(images[k], interpolation="nearest")
                ax.set_title(titles[k], fontsize=7)
        return to_svg(fig, "misclassified")
    return _styled(draw)


def errorbar_plot(points: Sequence[tuple[str, float, float, float]], *, name: str, xlabel: str, ylabel: str,
                  log_x: bool = False) -> str:
    """One point per (label, x, y, y error), labelled."""
    def draw() -> str:
        fig, ax = figure(6.5, 3.6)
        for label, x, y, err in points:
            ax.errorbar([x], [y], yerr=[err], fmt="o", capsize=4, label=label)
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        return to_svg(fig, name)
    return _styled(draw)


def curves_plot(curves: Sequence[tuple[str, Sequence[float], Sequence[float], Sequence[float]]], *, name: str,
                xlabel: str, ylabel: str, log_x: bool = False) -> str:
    """One line per (label, x, y, y error); error bands where an error is given, one colour per label."""
    def draw() -> str:
        fig, ax = figure(7.0, 3.6)
        colours: dict[str, Any] = {}
        for label, x, y, err in curves:
            seen = label in colours
            line, = ax.plot(x, y, "o-", ms=3, color=colours.get(label), label=None if seen else label)
            colours.setdefault(label, line.get_color())
            if err is not None and any(err):
                ax.fill_between(x, np.subtract(y, err), np.add(y, err), color=line.get_color(), alpha=0.15)
        if log_x:
            ax.set_xscale("log")
        else:
            _integer_ticks(ax)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend()
        return to_svg(fig, name)
    return _styled(draw)
