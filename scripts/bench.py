"""Dispatch `scripts/bench CASE [options]` to the module scripts/bench_CASE.py.

Each case module has `main(argv: list[str]) -> dict[str, object]`: it runs the measurement,
prints a human-readable table and returns the figures, which are saved as JSON with the
machine's description so that runs can be compared later, and as a markdown report with plots
of the raw samples the case returns under `series` (bench_report.py).

    scripts/bench [--results DIR] CASE [options]   (results default to bench-results/)
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "bench-results"
SECRET_OPTIONS = frozenset({"--token"})


def cases() -> list[str]:
    """Every scripts/bench_CASE.py that defines main() (bench_support.py is shared code)."""
    return sorted(
        path.stem.removeprefix("bench_")
        for path in HERE.glob("bench_*.py")
        if "\ndef main(" in path.read_text()
    )


def redacted(argv: list[str]) -> list[str]:
    """The arguments as results may keep them: a token's value never reaches a file."""
    kept: list[str] = []
    for arg in argv:
        if kept and kept[-1] in SECRET_OPTIONS:
            arg = "***"
        elif arg.split("=", 1)[0] in SECRET_OPTIONS and "=" in arg:
            arg = arg.split("=", 1)[0] + "=***"
        kept.append(arg)
    return kept


def main(argv: list[str]) -> int:
    results = RESULTS
    if argv[:1] == ["--results"] and len(argv) >= 2:
        results, argv = Path(argv[1]), argv[2:]
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print("usage: scripts/bench [--results DIR] CASE [options]   (CASE --help for its options)")
        print("cases: " + ", ".join(cases()))
        return 0 if argv else 2
    case, rest = argv[0], argv[1:]
    if case not in cases():
        print(f"unknown case {case!r}; cases: {', '.join(cases())}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    from bench_report import write_report

    module = importlib.import_module(f"bench_{case}")
    figures = module.main(rest)
    series = figures.pop("series", {})
    results.mkdir(parents=True, exist_ok=True)
    record = {
        "case": case,
        "argv": redacted(rest),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "figures": figures,
    }
    out = results / f"{case}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    report = write_report(out.with_suffix(""), record, series)
    print(f"saved {out} and {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
