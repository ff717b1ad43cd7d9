"""Reading /metrics in tests with prometheus-client's own parser, never by matching text."""

from __future__ import annotations

from prometheus_client import Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def families(text: str) -> dict[str, Metric]:
    """Every metric family of an exposition, by name (a counter's without `_total`)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_value(text: str, sample: str, labels: dict[str, str] | None = None) -> float:
    """The value of the one sample named `sample` with exactly `labels`; KeyError if none."""
    wanted = labels or {}
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == wanted:
                return float(found.value)
    raise KeyError(f"no sample {sample}{wanted} in the metrics")


def histogram_count_and_sum(histogram: Histogram) -> tuple[int, float]:
    """How many samples a prometheus-client histogram observed, and their sum."""
    (family,) = histogram.collect()
    samples = {sample.name: sample.value for sample in family.samples}
    return int(samples[f"{family.name}_count"]), float(samples[f"{family.name}_sum"])
