"""Offline replay of the tuning strategies (deploysnake.tuning.replay): no server, no measurement,
seconds of CPU. Each strategy's rounds run as the workflow runs them against landscapes (trial ->
throughput and p99) measured with noise, its choice made from a side by side of its best trials as
the workflow makes it, over many seeds; printed per landscape and strategy: quality (true throughput
of the choice over brute force's choice's: median, worst, share of runs at 0.95 or more), the
worst against the true optimum, and trials (mean, fraction of the grid).

    python benchmarks/search_replay.py [--seeds 20] [--noise 0.08] [--random 10]
        [--strategies joint,restarts,coordinate,...] [--trials-csv trials.csv --space default|knobs]

--trials-csv replays a recorded brute-force search (a results/tuning/.../trials.csv) as a landscape
too. The last line is machine-readable, per strategy over every run on the spaces with the runtime
knobs: `replay: STRATEGY worst=Q share095=S trials=F ...`.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    from deploysnake.tuning import replay

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="runs of each strategy per landscape")
    parser.add_argument(
        "--noise", type=float, default=replay.NOISE, help="log-normal sigma of a measurement"
    )
    parser.add_argument("--random", type=int, default=10, help="rugged random landscapes")
    parser.add_argument("--max-rounds", type=int, default=6, help="tuning.max_rounds")
    parser.add_argument(
        "--strategies",
        default="joint,joint_1start,joint_2starts,joint_4starts,joint_triple,joint_single,restarts,coordinate,hill_climb,restarts2,joint_pair",
        help="comma-separated names of deploysnake.tuning.replay.VARIANTS",
    )
    parser.add_argument("--trials-csv", type=Path, help="a recorded brute-force trials.csv")
    parser.add_argument(
        "--space", choices=["default", "knobs"], default="default", help="the recorded run's space"
    )
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    found = replay.landscapes(args.random)
    if args.trials_csv:
        with open(args.trials_csv, newline="") as handle:
            rows = list(csv.DictReader(handle))
        space = replay.DEFAULT_SPACE if args.space == "default" else replay.KNOB_SPACE
        found.insert(0, replay.from_rows(f"recorded {args.trials_csv.name}", space, rows))
    started = time.monotonic()
    summaries = replay.evaluate(
        strategies, found, args.seeds, args.noise, args.max_rounds, side_by_side_rounds=3
    )
    print(
        f"{'landscape':40} {'strategy':16} {'q median':>8} {'q worst':>8} {'>=0.95':>7} "
        f"{'of opt':>7} {'trials':>7} {'of grid':>8} {'rounds':>6}"
    )
    for s in summaries:
        print(
            f"{s.landscape:40} {s.strategy:16} {s.quality_median:8.3f} {s.quality_min:8.3f} "
            f"{s.share_at_095:7.2f} {s.of_optimum_min:7.3f} {s.trials_mean:7.1f} "
            f"{s.trials_fraction:8.3f} {s.rounds_max:6d}"
        )
    print(f"{len(summaries)} summaries, {args.seeds} runs each, {time.monotonic() - started:.0f} s")
    for strategy in strategies:
        mine = [s for s in summaries if s.strategy == strategy and "knobs" in s.landscape]
        default = [s for s in summaries if s.strategy == strategy and "default" in s.landscape]
        print(
            f"replay: {strategy} worst={min(s.quality_min for s in mine):.3f} "
            f"share095={sum(s.share_at_095 for s in mine) / len(mine):.3f} "
            f"trials={max(s.trials_fraction for s in mine):.3f} "
            f"default_worst={min((s.quality_min for s in default), default=0):.3f} "
            f"default_trials={max((s.trials_fraction for s in default), default=0):.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
