"""Run many simulation seeds and report: `python -m tests.sim.soak --seeds N [--seed S]`.

Each seed prints one line (its seed, sends, log entries, virtual seconds); a failing seed prints
its fault schedule and violations, and how to replay it exactly. The end prints seeds per minute
of real time. Logging is off unless --verbose: the nodes log every fault they meet.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time

from tests.sim.simulation import simulate

VIOLATIONS_SHOWN_MAX = 10


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--seed", type=int, default=None, help="replay this one seed")
    parser.add_argument("--first", type=int, default=None, help="the first seed (default random)")
    parser.add_argument("--verbose", action="store_true", help="the nodes' logs, and every seed")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL + 1)
    if args.seed is not None:
        seeds = [args.seed]
    else:
        first = args.first if args.first is not None else random.SystemRandom().randrange(2**32)
        seeds = [first + k for k in range(args.seeds)]
    began = time.perf_counter()
    failed = 0
    for seed in seeds:
        outcome = simulate(seed)
        if args.verbose or outcome.violations or len(seeds) == 1:
            print(outcome.scenario.describe())
        print(
            f"sim: seed {seed} sends {outcome.sends} entries {outcome.log_entries} "
            f"virtual {outcome.virtual_s:.1f}s {'FAILED' if outcome.violations else 'ok'}",
            flush=True,
        )
        if outcome.violations:
            failed += 1
            for violation in outcome.violations[:VIOLATIONS_SHOWN_MAX]:
                print(f"  violation: {violation}")
            print(f"  replay: scripts/sim --seed {seed}")
    elapsed = time.perf_counter() - began
    rate = len(seeds) / elapsed * 60 if elapsed > 0 else 0.0
    print(f"sim: {len(seeds)} seeds, {failed} failed, {elapsed:.1f}s, {rate:.0f} seeds/minute")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
