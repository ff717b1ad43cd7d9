"""A benchmark run as a markdown report with plots, next to its JSON under bench-results/.

A case may return, besides its figures, `series`: named lists of raw samples, each drawn as one
plot (matplotlib, no display needed):
- `rate`: event times in seconds, drawn as events per second over time (throughput);
- `cdf`: values (lateness, for instance), drawn as their cumulative distribution;
- `histogram`: values (latencies), drawn as a histogram with a log-scaled count axis.
The report holds the run's command, machine and time, every figure (nested figures flattened
to dotted names) and the plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt

PLOT_INCHES = (7.0, 3.2)
PLOT_DPI = 100
HISTOGRAM_BINS = 60
# A rate plot has at least this many bins (finer than a second for short runs), each at least
# RATE_BIN_S_MIN / RATE_BINS_MIN seconds wide.
RATE_BINS_MIN = 20
RATE_BIN_S_MIN = 0.2


@dataclass(frozen=True)
class Series:
    """Samples to draw: `kind` is rate, cdf or histogram; `unit` labels the value axis."""

    kind: str
    title: str
    unit: str
    values: list[float]


def flatten(figures: dict[str, object], prefix: str = "") -> list[tuple[str, object]]:
    """Nested figures as (dotted name, value) rows, in order."""
    rows: list[tuple[str, object]] = []
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(flatten(value, name + "."))
        else:
            rows.append((name, value))
    return rows


def write_report(base: Path, record: dict[str, object], series: dict[str, Series]) -> Path:
    """Write `base`.md and one `base`-NAME.png per series; the markdown file's path."""
    argv, figures = record["argv"], record["figures"]
    assert isinstance(argv, list) and isinstance(figures, dict)
    lines = [
        f"# scripts/bench {record['case']} {' '.join(argv)}".rstrip(),
        "",
        f"Run at {record['at']} on {machine(record['machine'])}.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value} |" for name, value in flatten(figures)]
    for name, samples in series.items():
        if not samples.values:
            continue
        image = base.with_name(f"{base.name}-{name}.png")
        draw(samples, image)
        lines += ["", f"## {samples.title}", "", f"![{samples.title}]({image.name})"]
    report = base.with_suffix(".md")
    report.write_text("\n".join(lines) + "\n")
    return report


def machine(described: object) -> str:
    if not isinstance(described, dict):
        return str(described)
    return f"{described.get('cpus')} CPUs, Python {described.get('python')}"


def draw(samples: Series, image: Path) -> None:
    figure, axes = plt.subplots(figsize=PLOT_INCHES, dpi=PLOT_DPI)
    try:
        values = samples.values
        if samples.kind == "rate":
            # One-second bins, finer for a run shorter than RATE_BINS_MIN seconds (a burst
            # delivered within a second would otherwise be a single point).
            width = min(1.0, max(max(values), RATE_BIN_S_MIN) / RATE_BINS_MIN)
            bins = max(1, math.ceil(max(values) / width))
            counts = [0] * bins
            for at in values:
                counts[min(bins - 1, int(at / width))] += 1
            axes.plot(
                [k * width for k in range(bins)],
                [c / width for c in counts],
                "-o",
                drawstyle="steps-post",
                markersize=2,
            )
            axes.set_xlabel("seconds since start")
            axes.set_ylabel(f"{samples.unit} per second")
            axes.set_ylim(bottom=0)
        elif samples.kind == "cdf":
            ordered = sorted(values)
            fractions = [(k + 1) / len(ordered) for k in range(len(ordered))]
            axes.plot(ordered, fractions)
            axes.set_xlabel(samples.unit)
            axes.set_ylabel("fraction at or below")
            axes.set_ylim(0, 1)
        elif samples.kind == "histogram":
            axes.hist(values, bins=HISTOGRAM_BINS)
            axes.set_yscale("log")
            axes.set_xlabel(samples.unit)
            axes.set_ylabel("count")
        else:
            raise ValueError(f"unknown series kind {samples.kind!r}")
        axes.set_title(samples.title)
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        figure.savefig(image)
    finally:
        plt.close(figure)
