"""The report's figures: matplotlib (Agg, no display) rendered to base64 PNG data URIs, so the
HTML report is one self-contained file that opens offline.

Every function takes plain numbers (lists, dicts of series) and returns a `data:image/png`
URI; none reads files or knows about runs.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Series = dict[str, list[tuple[float, float | None]]]  # label -> [(x, y)]
Band = tuple[float | None, float | None, float | None]  # (mean, ci_low, ci_high)


def to_data_uri(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _legend(axis, fontsize: int = 8) -> None:
    """A legend only where something is labelled (an empty one makes matplotlib warn)."""
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=fontsize)


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def line_panels(panels: dict[str, Series], *, xlabel: str, markers: dict[str, float] | None = None, title: str = "", ylim: tuple[float, float] | None = None) -> str:
    """One panel per metric, one line per label; `markers` draws a dashed vertical line per
    label (the early-warning step) in that label's colour. A panel without one finite point
    is left out (an SFT run logs a loss but no reward, length or markers): empty axes read as a
    broken run."""
    panels = {name: series for name, series in panels.items() if any(_finite(y) for points in series.values() for _, y in points)} or panels
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    labels = list(dict.fromkeys(label for series in panels.values() for label in series))
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    for axis, (name, series) in zip(axes[0], panels.items()):
        for label, points in series.items():
            points = [(x, y) for x, y in points if _finite(y)]
            if points:
                axis.plot([x for x, _ in points], [y for _, y in points], marker="." if len(points) < 30 else None, color=colours[label], label=label)
        for label, step in (markers or {}).items():
            if _finite(step):
                axis.axvline(step, color=colours.get(label, "k"), linestyle="--", linewidth=1)
        axis.set_title(name, fontsize=10)
        axis.set_xlabel(xlabel)
        axis.grid(alpha=0.3)
        if ylim:
            axis.set_ylim(*ylim)
    if markers:
        axes[0][0].plot([], [], color="grey", linestyle="--", label="early warning")
    _legend(axes[0][0], fontsize=7)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return to_data_uri(figure)


def interval_bars(groups: Sequence[str], values: dict[str, Sequence[Band]], *, ylabel: str, ylim: tuple[float, float] | None = None) -> str:
    """Grouped bars (one bar per key of `values`, e.g. ID and OOD) with 95% interval whiskers."""
    # capped: a page scales a wider figure down until its labels cannot be read (12 groups x 4 sets)
    figure, axis = plt.subplots(figsize=(min(16.0, max(4.5, 0.9 * len(groups) * len(values))), 3.8))
    width = 0.8 / max(1, len(values))
    for i, (name, bands) in enumerate(values.items()):
        xs = [g + (i - (len(values) - 1) / 2) * width for g in range(len(groups))]
        means = [b[0] if _finite(b[0]) else 0.0 for b in bands]
        errors = [[m - b[1] if _finite(b[1]) else 0.0 for m, b in zip(means, bands)], [b[2] - m if _finite(b[2]) else 0.0 for m, b in zip(means, bands)]]
        axis.bar(xs, means, width=width, label=name, yerr=errors, capsize=3, color=f"C{i}")
    axis.set_xticks(range(len(groups)))
    axis.set_xticklabels(groups, rotation=20, ha="right", fontsize=8)
    axis.set_ylabel(ylabel)
    if ylim:
        axis.set_ylim(*ylim)
    _legend(axis)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return to_data_uri(figure)


def interval_lines(panels: dict[str, dict[str, list[tuple[float, Band]]]], *, xlabel: str, ylabel: str, log_x: bool = False, ylim: tuple[float, float] | None = None) -> str:
    """One panel per key (ID, OOD), one line per series with 95% interval error bars."""
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
    for axis, (name, series) in zip(axes[0], panels.items()):
        for i, (label, points) in enumerate(series.items()):
            points = sorted((x, band) for x, band in points if _finite(band[0]))
            if not points:
                continue
            xs, means = [x for x, _ in points], [b[0] for _, b in points]
            low = [m - b[1] if _finite(b[1]) else 0.0 for m, (_, b) in zip(means, points)]
            high = [b[2] - m if _finite(b[2]) else 0.0 for m, (_, b) in zip(means, points)]
            axis.errorbar(xs, means, yerr=[low, high], marker="o", capsize=3, label=label, color=f"C{i}")
        if log_x:
            axis.set_xscale("log")
        if ylim:
            axis.set_ylim(*ylim)
        axis.set_title(name, fontsize=10)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        _legend(axis)
    figure.tight_layout()
    return to_data_uri(figure)
