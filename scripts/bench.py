"""Dispatch `scripts/bench CASE [options]` to the module scripts/bench_CASE.py.

Each case module has `main(argv: list[str]) -> dict[str, object]`: it runs the measurement,
prints a human-readable table and returns the figures, which are saved as JSON with the
machine's description so that runs can be compared later.
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


def cases() -> list[str]:
    """Every scripts/bench_CASE.py that defines main() (bench_support.py is shared code)."""
    return sorted(
        path.stem.removeprefix("bench_")
        for path in HERE.glob("bench_*.py")
        if "\ndef main(" in path.read_text()
    )


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print("usage: scripts/bench CASE [options]   (CASE --help for its options)")
        print("cases: " + ", ".join(cases()))
        return 0 if argv else 2
    case, rest = argv[0], argv[1:]
    if case not in cases():
        print(f"unknown case {case!r}; cases: {', '.join(cases())}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    module = importlib.import_module(f"bench_{case}")
    figures = module.main(rest)
    RESULTS.mkdir(exist_ok=True)
    record = {
        "case": case,
        "argv": rest,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "figures": figures,
    }
    out = RESULTS / f"{case}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
