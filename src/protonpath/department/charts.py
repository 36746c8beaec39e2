"""Charts of the activity page, drawn on the server as PNG images (matplotlib, Agg backend)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR = "#0b5fa5"
_REFERENCE_COLOUR = "#b42318"
_MUTED_COLOUR = "#9aa8b6"


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def bar_chart(
    labels: list[str],
    values: list[float],
    *,
    title: str,
    ylabel: str = "",
    horizontal: bool = False,
    reference: float | None = None,
    reference_label: str = "",
    muted: tuple[int, ...] = (),
) -> bytes:
    """A bar chart as PNG bytes (counts on an integer axis).

    ``reference`` draws a horizontal line (e.g. the 2019 activity); bars whose index is in
    ``muted`` are greyed (e.g. the reference year's bar).
    """
    # Figure() rather than pyplot: no global state, safe in a threaded server.
    figure = Figure(figsize=(7, 3.6 if not horizontal else max(2.5, 0.32 * len(labels) + 1)))
    axes = figure.add_subplot()
    colours = [_MUTED_COLOUR if index in muted else _COLOUR for index in range(len(values))]
    if horizontal:
        axes.barh(labels, values, color=colours)
        axes.invert_yaxis()
        axes.set_xlabel(ylabel)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        axes.bar([str(label) for label in labels], values, color=colours)
        axes.set_ylabel(ylabel)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        if reference is not None:
            axes.axhline(reference, color=_REFERENCE_COLOUR, linestyle="--", linewidth=1.5, label=reference_label)
            axes.set_ylim(0, max([reference, *values]) * 1.18)
            axes.legend(loc="upper right", fontsize=8, frameon=False)
    axes.set_title(title, fontsize=11)
    axes.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def grouped_bar_chart(
    labels: list[str],
    series: list[tuple[str, list[float]]],
    *,
    title: str,
    ylabel: str = "",
    reference: float | None = None,
    reference_label: str = "",
) -> bytes:
    """Bars side by side for each label, one colour per series, with an optional reference line."""
    figure = Figure(figsize=(7, 3.6))
    axes = figure.add_subplot()
    width = 0.8 / max(len(series), 1)
    colours = [_COLOUR, "#1f7a3a", _MUTED_COLOUR]
    for index, (name, values) in enumerate(series):
        positions = [x - 0.4 + width * (index + 0.5) for x in range(len(labels))]
        axes.bar(positions, values, width=width, label=name, color=colours[index % len(colours)])
    axes.set_xticks(range(len(labels)), [str(label) for label in labels])
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(ylabel)
    if reference is not None:
        axes.axhline(reference, color=_REFERENCE_COLOUR, linestyle="--", linewidth=1.5, label=reference_label)
        tallest = max([reference, *(v for _name, values in series for v in values)])
        axes.set_ylim(0, tallest * 1.25)
    axes.legend(loc="upper right", fontsize=8, frameon=False)
    axes.set_title(title, fontsize=11)
    axes.spines[["top", "right"]].set_visible(False)
    return _png(figure)
