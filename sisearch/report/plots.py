"""Curves of a metric per configuration: against the iteration and against cumulative generated tokens.

One line per configuration (the mean over its seeds), a shaded band from the lowest to the highest seed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed (or wanted) on a server
import matplotlib.pyplot as plt  # noqa: E402

from sisearch.report.table import Configuration, generated_tokens  # noqa: E402


@dataclass
class Curve:
    label: str
    iterations: list[int]
    tokens: list[float]  # cumulative generated tokens after each iteration, mean over seeds
    mean: list[float]
    low: list[float]
    high: list[float]


def curve(config: Configuration, metric: str) -> Curve:
    """The iterations that every run of the configuration finished and logged `metric` at."""
    length = min(len(run.rows) for run in config.runs)
    points = [t for t in range(length) if all(metric in run.rows[t] for run in config.runs)]
    values = [[float(run.rows[t][metric]) for run in config.runs] for t in points]
    return Curve(
        config.label,
        points,
        [statistics.fmean(generated_tokens(run, t) for run in config.runs) for t in points],
        [statistics.fmean(v) for v in values],
        [min(v) for v in values],
        [max(v) for v in values],
    )


def plot(curves: list[Curve], x: str, metric: str, path: Path) -> Path:
    """One PNG: `x` is "iteration" or "tokens"."""
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for c in curves:
        xs = c.iterations if x == "iteration" else c.tokens
        (line,) = axes.plot(xs, c.mean, marker="o", label=c.label)
        axes.fill_between(xs, c.low, c.high, color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set_xlabel("iteration" if x == "iteration" else "cumulative generated tokens")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} (mean over seeds; band: lowest to highest seed)", fontsize=9)
    axes.grid(alpha=0.3)
    if x == "iteration":
        axes.xaxis.get_major_locator().set_params(integer=True)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def write_plots(configs: list[Configuration], metric: str, out: Path) -> list[Path]:
    curves = [curve(c, metric) for c in configs]
    name = metric.replace("/", "_")
    return [
        plot(curves, "iteration", metric, out / f"{name}_vs_iteration.png"),
        plot(curves, "tokens", metric, out / f"{name}_vs_tokens.png"),
    ]
