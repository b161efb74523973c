"""Offline replay of the search strategies: each strategy's rounds run as the workflow runs them
(tuning.plan.propose on every trial measured before), against a landscape (trial -> throughput and
p99, recorded or synthetic) measured with noise, then its choice made as the workflow makes it (its
best trials and the untuned configuration measured again side by side, the best median chosen).

A strategy's quality in one run is the true throughput of its choice over the true throughput of
brute force's choice in a run with the same noise level (the figure `make bench` measures side by
side as search_quality), and its cost the trials it measured over the grid's.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..contracts import Status
from .coordinate import SWEEP_ORDER, climb
from .joint import BLOCKS as JOINT_BLOCKS
from .joint import propose as joint
from .plan import STRATEGIES, Strategy, propose
from .restarts import propose as restarts
from .space import full_space, grid, naive, trial_id
from .state import incumbent, ranked

# Multiplicative measurement noise: a log-normal factor with this sigma (a configuration's throughput
# moves by 10-20 % from one minute to the next on the 2-core machine: about two sigmas).
NOISE = 0.08
# The default tuning space (config/config.yaml) and the larger one with ONNX Runtime's knobs.
DEFAULT_SPACE: dict[str, list[Any]] = {
    "max_batch_size": [256, 512, 1024],
    "dynamic_batching": [False, True],
    "max_queue_delay_us": [0, 100, 500, 2000],
    "preferred_batch_sizes": ["none", "config", "max"],
    "instances": [1, 2],
    "runtime_threads": [0, 1, 2],
}
KNOB_SPACE: dict[str, list[Any]] = {
    **DEFAULT_SPACE,
    "execution_mode": ["sequential", "parallel"],
    "inter_op_threads": [0, 2],
    "graph_optimization_level": ["all", "extended", "basic", "disabled"],
}
# The workflow's triton section (config/config.yaml): the untuned start.
UNTUNED = {
    "max_batch_size": 256,
    "dynamic_batching": {
        "enabled": True,
        "preferred_batch_sizes": [64, 128, 256],
        "max_queue_delay_us": 100,
    },
    "instances": {"cpu": 1},
    "runtime_threads": 0,
}

Truth = Callable[[dict[str, Any]], tuple[float, float]]


def _joint_pair(state: Any) -> list[dict[str, Any]]:
    """joint with a block of two (batching x instances) instead of three."""
    blocks = [("dynamic_batching", "instances"), *[(d,) for d in SWEEP_ORDER[2:]]]
    return climb(state, state.start, blocks, [(d,) for d in SWEEP_ORDER])


def _joint_single(state: Any) -> list[dict[str, Any]]:
    """joint before pairs and budget (up to 2026-12-07): one climber whose first block is batching
    x instances x threads, single settings after the pass until none finds anything new."""
    blocks = [("dynamic_batching", "instances", "runtime_threads"), *JOINT_BLOCKS[2:]]
    return climb(state, state.start, blocks, [(d,) for d in SWEEP_ORDER])


# The strategies the replay compares: the workflow's, and variants of the new ones.
VARIANTS: dict[str, Strategy] = {
    **STRATEGIES,
    "restarts2": lambda state: restarts(state, starts=2),
    "restarts4": lambda state: restarts(state, starts=4),
    "joint_1start": lambda state: joint(state, starts=1),
    "joint_2starts": lambda state: joint(state, starts=2),
    "joint_4starts": lambda state: joint(state, starts=4),
    "joint_triple": lambda state: joint(
        state, blocks=[("dynamic_batching", "instances", "runtime_threads"), *JOINT_BLOCKS[2:]]
    ),
    "joint_single": _joint_single,
    "joint_pair": _joint_pair,
}


@dataclass
class Landscape:
    """A space, its untuned start and the true (throughput infer/s, p99 µs) of every trial."""

    name: str
    space: dict[str, list[Any]]
    truth: Truth
    budget_us: float = 10_000.0
    start: dict[str, Any] = field(init=False)
    table: dict[str, tuple[float, float]] = field(init=False)

    def __post_init__(self) -> None:
        self.space = full_space(self.space)
        self.start = naive(UNTUNED, "cpu", self.space)
        self.table = {trial_id(t): self.truth(t) for t in grid(self.space)}

    def true_best(self) -> float:
        feasible = [t for t, p in self.table.values() if p <= self.budget_us]
        return max(feasible or [0.0])

    def true(self, trial: str) -> float:
        """The true throughput of a trial, 0 where its true p99 is past the budget."""
        throughput, p99 = self.table[trial]
        return throughput if p99 <= self.budget_us else 0.0


def from_rows(name: str, space: dict[str, list[Any]], rows: Iterable[dict[str, Any]]) -> Landscape:
    """A landscape from a recorded table (trials.csv rows of a brute-force search): a trial not
    recorded (or not stable) counts as 0 infer/s at an infinite p99."""
    known = {
        r["trial"]: (float(r["throughput"]), float(r["p99_us"]))
        for r in rows
        if r.get("throughput") not in (None, "") and r.get("p99_us") not in (None, "")
    }
    return Landscape(name, space, lambda t: known.get(trial_id(t), (0.0, math.inf)))


def _p99(throughput: float, delay_us: float, concurrency: int = 16) -> float:
    """An online trial's p99 (µs): requests in flight over throughput (Little's law), x1.3 for the
    tail, plus the batcher's queue delay."""
    return 1.3 * concurrency / throughput * 1e6 + delay_us


def _knob_factor(t: dict[str, Any]) -> float:
    """ONNX Runtime's knobs on a small CNN without branches (the default model): parallel execution
    costs a little, more with inter-op threads beside two instances; lower graph levels lose
    fusions."""
    factor = {"all": 1.0, "extended": 0.99, "basic": 0.9, "disabled": 0.6}[
        t["graph_optimization_level"]
    ]
    if t["execution_mode"] == "parallel":
        factor *= 0.93 * (0.9 if t["inter_op_threads"] and t["instances"] > 1 else 1.0)
    return factor


def recorded_failure(t: dict[str, Any]) -> tuple[float, float]:
    """Shaped like the quiet `make bench` where coordinate search reached 0.64 of brute force: one
    instance without dynamic batching is a local optimum (batching alone, or a second instance
    alone, loses a little), two instances with batching are best, x1.57."""
    db, inst, thr = t["dynamic_batching"], t["instances"], t["runtime_threads"]
    value = {(False, 1): 2600.0, (False, 2): 2450.0, (True, 1): 2450.0, (True, 2): 4100.0}[
        (db, inst)
    ]
    # threads: 0 is the CPUs (2) over the instances; two instances x two threads oversubscribe
    value *= {1: {0: 0.97, 1: 1.0, 2: 0.97}, 2: {0: 1.0, 1: 1.0, 2: 0.85}}[inst][thr]
    if db:
        value *= {0: 0.97, 100: 1.0, 500: 1.03, 2000: 0.99}[t["max_queue_delay_us"]]
        value *= {"none": 1.0, "config": 0.99, "max": 1.01, "halfmax": 1.0}[
            t["preferred_batch_sizes"]
        ]
    value *= {256: 1.0, 512: 1.005, 1024: 1.01}.get(t["max_batch_size"], 1.0)
    value *= _knob_factor(t)
    return value, _p99(value, t["max_queue_delay_us"] if db else 0)


def close_basins(t: dict[str, Any]) -> tuple[float, float]:
    """Shaped like run 1 of the quiet `make bench` of 2026-12-07, where joint reached 0.930 of brute
    force: two basins within the noise of one another. One instance with one runtime thread and
    batching (0.93 of the best: joint's choice, with a 500 µs queue delay) beside two instances with
    the runtime's default threads and batching (the best: brute force's, without a queue delay); one
    instance with the default threads is the untuned configuration (0.66: 6,451 against 9,776 infer/s
    side by side). The queue delay helps one instance and costs two."""
    db, inst, thr = t["dynamic_batching"], t["instances"], t["runtime_threads"]
    value = (
        9776.0
        * {
            (True, 1): {0: 0.66, 1: 0.93, 2: 0.70},
            (True, 2): {0: 1.0, 1: 0.97, 2: 0.80},
            (False, 1): {0: 0.60, 1: 0.80, 2: 0.62},
            (False, 2): {0: 0.85, 1: 0.84, 2: 0.70},
        }[(db, inst)][thr]
    )
    if db:
        delay = {1: {0: 0.97, 100: 0.99, 500: 1.0, 2000: 0.96}, 2: {0: 1.0, 100: 0.99, 500: 0.97}}
        value *= delay[inst].get(t["max_queue_delay_us"], 0.93)
        value *= {"none": 1.0, "config": 0.995, "max": 0.99, "halfmax": 0.99}[
            t["preferred_batch_sizes"]
        ]
    value *= {256: 0.99, 512: 0.995, 1024: 1.0}.get(t["max_batch_size"], 1.0)
    value *= _knob_factor(t)
    return value, _p99(value, t["max_queue_delay_us"] if db else 0)


def rugged(seed: int) -> Truth:
    """A random landscape: each option of each setting a main effect (log-normal, sigma 0.1), a few
    random pairs of settings an interaction (sigma 0.25), and one hidden combination of two settings'
    options worth x1.3-1.6 (a best that only a move of two coordinates at once reaches)."""
    rng = random.Random(seed)
    space = full_space(KNOB_SPACE)
    dims = list(space)
    main = {(d, str(o)): rng.gauss(0, 0.1) for d in dims for o in space[d]}
    pairs = rng.sample([(a, b) for a in dims for b in dims if a < b], 4)
    inter = {
        (a, str(x), b, str(y)): rng.gauss(0, 0.25)
        for a, b in pairs
        for x in space[a]
        for y in space[b]
    }
    a, b = rng.sample(["dynamic_batching", "instances", "runtime_threads", "max_batch_size"], 2)
    hidden = (a, str(rng.choice(space[a])), b, str(rng.choice(space[b])), rng.uniform(0.26, 0.47))

    def truth(t: dict[str, Any]) -> tuple[float, float]:
        log = sum(main[(d, str(t[d]))] for d in dims)
        log += sum(inter.get((a, str(t[a]), b, str(t[b])), 0.0) for a, b in pairs)
        if str(t[hidden[0]]) == hidden[1] and str(t[hidden[2]]) == hidden[3]:
            log += hidden[4]
        value = 3000.0 * math.exp(log)
        return value, _p99(value, t["max_queue_delay_us"] if t["dynamic_batching"] else 0)

    return truth


def separable(t: dict[str, Any]) -> tuple[float, float]:
    """Each setting adds its own share: every strategy should find the best."""
    value = (
        2000.0
        + 1000.0 * t["dynamic_batching"]
        + 300.0 * t["instances"]
        + 100.0 * t["runtime_threads"]
        + t["max_batch_size"] / 10
        + (t["max_queue_delay_us"] / 20 if t["dynamic_batching"] else 0.0)
    ) * _knob_factor(t)
    return value, _p99(value, 0)


def landscapes(random_count: int = 10) -> list[Landscape]:
    """The recorded failure's and the close basins' shapes on the default space and on the larger
    one, a separable one, and random rugged ones on the larger space."""
    found = [
        Landscape("recorded failure, default space", DEFAULT_SPACE, recorded_failure),
        Landscape("recorded failure, with runtime knobs", KNOB_SPACE, recorded_failure),
        Landscape("close basins, default space", DEFAULT_SPACE, close_basins),
        Landscape("close basins, with runtime knobs", KNOB_SPACE, close_basins),
        Landscape("separable, with runtime knobs", KNOB_SPACE, separable),
    ]
    found += [
        Landscape(f"rugged #{k}, with runtime knobs", KNOB_SPACE, rugged(k))
        for k in range(random_count)
    ]
    return found


@dataclass(frozen=True)
class Outcome:
    """One search: the trial it chose, trials measured, rounds run."""

    chosen: str
    trials: int
    rounds: int


def search(
    strategy: str | Strategy,
    landscape: Landscape,
    rng: random.Random,
    noise: float = NOISE,
    max_rounds: int = 6,
    side_by_side_rounds: int = 3,
    candidates: int = 2,
) -> Outcome:
    """One search as the workflow runs it: rounds of `strategy` until one plans nothing or
    max_rounds, each trial one noisy measurement; then its `candidates` best trials and the untuned
    one measured `side_by_side_rounds` times each, the best median chosen (0 rounds: the best trial)."""

    def measured(trial: str) -> dict[str, Any]:
        throughput, p99 = landscape.table[trial]
        factor = rng.lognormvariate(0.0, noise)
        return {
            "trial": trial,
            "status": Status.OK if throughput > 0 else Status.FAILED,
            "throughput": throughput * factor if throughput > 0 else None,
            "p99_us": p99 / factor if throughput > 0 else None,
        }

    rows: list[dict[str, Any]] = []
    rounds = 0
    for round_no in range(max_rounds):
        trials = propose(
            VARIANTS[strategy] if isinstance(strategy, str) else strategy,
            landscape.space,
            landscape.start,
            rows,
            round_no,
            landscape.budget_us,
            0.0,
        )
        if not trials:
            break
        rounds += 1
        rows += [measured(trial_id(t)) for t in trials]
    if side_by_side_rounds:
        shortlist = list(
            dict.fromkeys(
                [r["trial"] for r in ranked(rows, landscape.budget_us)[:candidates]]
                + [trial_id(landscape.start)]
            )
        )
        again = {t: [measured(t) for _ in range(side_by_side_rounds)] for t in shortlist}
        medians = [
            {
                "trial": t,
                "status": Status.OK,
                "throughput": statistics.median(m["throughput"] for m in ms),
                "p99_us": statistics.median(m["p99_us"] for m in ms),
            }
            for t, ms in again.items()
            if all(m["throughput"] is not None for m in ms)
        ]
        best, _ = incumbent(medians, landscape.budget_us)
    else:
        best, _ = incumbent(rows, landscape.budget_us)
    chosen = best["trial"] if best else trial_id(landscape.start)
    return Outcome(chosen, len(rows), rounds)


@dataclass(frozen=True)
class Summary:
    """One strategy on one landscape over many runs: quality (true throughput of its choice over
    brute force's choice's, per run), its share of runs at 0.95 or more, quality against the true
    optimum, and trials (mean, and as a fraction of the grid)."""

    landscape: str
    strategy: str
    runs: int
    quality_median: float
    quality_min: float
    share_at_095: float
    of_optimum_min: float
    trials_mean: float
    trials_fraction: float
    rounds_max: int


def evaluate(
    strategies: list[str],
    found: list[Landscape],
    seeds: int = 20,
    noise: float = NOISE,
    max_rounds: int = 6,
    side_by_side_rounds: int = 3,
) -> list[Summary]:
    """Every strategy on every landscape, `seeds` runs each (run k of every strategy, brute force's
    included, draws its noise from seed k)."""
    summaries = []
    for landscape in found:
        size = len(landscape.table)
        optimum = landscape.true_best()
        brute = [
            landscape.true(
                search(
                    "brute_force",
                    landscape,
                    random.Random(k),
                    noise,
                    1,
                    side_by_side_rounds,
                ).chosen
            )
            for k in range(seeds)
        ]
        for strategy in strategies:
            outcomes = [
                search(
                    strategy,
                    landscape,
                    random.Random(1000 + k),
                    noise,
                    max_rounds,
                    side_by_side_rounds,
                )
                for k in range(seeds)
            ]
            quality = [
                landscape.true(o.chosen) / b if b else 0.0
                for o, b in zip(outcomes, brute, strict=True)
            ]
            trials = statistics.mean(o.trials for o in outcomes)
            summaries.append(
                Summary(
                    landscape.name,
                    strategy,
                    seeds,
                    statistics.median(quality),
                    min(quality),
                    sum(q >= 0.95 for q in quality) / seeds,
                    min(landscape.true(o.chosen) for o in outcomes) / optimum if optimum else 0.0,
                    trials,
                    trials / size,
                    max(o.rounds for o in outcomes),
                )
            )
    return summaries
