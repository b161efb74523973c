"""joint (default): block coordinate climbers whose blocks sweep jointly the settings that pay only
together, from the untuned start and from spread starting points, held to a tenth of the grid.

The pass, each block around the best so far: dynamic batching x instances (batching helps once a
second instance takes the batches), instances x runtime threads (they share the cores), then the
batcher's queue delay, preferred sizes and max batch size one at a time, then the runtime's knobs
jointly (ONNX Runtime's inter-op threads count only in parallel execution). On the default space the
pass costs 4 + 5 + 3 + 2 + 2 trials (the start included) of the grid's 234. After it, pairs of
settings swept jointly around the best (PAIRS_FIRST, then every other pair: a move of two
coordinates at once where one alone loses), until no pair has anything new.

Beside the climber from the untuned start, STARTS - 1 climbers from grid points spread across the
space (restarts.spread_starts: the first is batching off with two instances), so a basin the start's
climber measured once, unluckily, is climbed too. The start's climber makes its pass first; the
other climbers' steps, and every step after a pass, take only what the budget leaves (TRIAL_SHARE
of the grid, less the trials measured and the rest of the start's pass), their most promising trials
first (promise). Model Analyzer's quick search promises more than 95 % of brute force's best while
searching under 10 % of the space (triton-inference-server/model_analyzer, docs/config_search.md,
"Quick Search Mode"): the share is that bound.

Why: a quiet `make bench` saw coordinate search stop at one instance without batching where two
instances with batching were x1.57 better (the first block holds that move), and the earlier joint
(batching x instances x threads, then single settings) stop at one instance with one thread where
two instances with the default threads were x1.07 better: its first block ranked them by one
measurement each, and every later block swept around the one instance. benchmarks/search_replay.py
replays both failures (recorded_failure, close_basins) and rugged random landscapes.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from ..contracts import Status
from .coordinate import SWEEP_ORDER, climb_step
from .restarts import spread_starts
from .space import full_space, grid, parse_trial, trial_id
from .state import SearchState

BLOCKS = [
    ("dynamic_batching", "instances"),
    ("instances", "runtime_threads"),
    ("max_queue_delay_us",),
    ("preferred_batch_sizes",),
    ("max_batch_size",),
    ("execution_mode", "inter_op_threads", "graph_optimization_level"),
]
# The pairs swept first after the pass: threads x instances share the CPUs; batching pays with a
# second instance; the batcher's queue delay with its batch sizes.
PAIRS_FIRST = [
    ("instances", "runtime_threads"),
    ("dynamic_batching", "instances"),
    ("max_queue_delay_us", "max_batch_size"),
    ("max_queue_delay_us", "preferred_batch_sizes"),
]
# What the search measures at most, the start's pass aside: this share of the grid (every trial of
# the search's rounds counts, measured now or cached from an earlier search).
TRIAL_SHARE = 0.10
# Climbers: the untuned start and STARTS - 1 spread starting points.
STARTS = 3


def pairs(space: dict[str, list[Any]]) -> list[tuple[str, ...]]:
    """PAIRS_FIRST, then every other pair of settings in SWEEP_ORDER, of settings with two options
    or more (single settings where no pair has two; the first setting where none has)."""
    dims = [d for d in SWEEP_ORDER if len(space.get(d, [])) > 1]
    found: list[tuple[str, ...]] = [p for p in PAIRS_FIRST if set(p) <= set(dims)]
    found += [
        (a, b)
        for i, a in enumerate(dims)
        for b in dims[i + 1 :]
        if (a, b) not in found and (b, a) not in found
    ]
    return found or [(d,) for d in dims] or [(SWEEP_ORDER[0],)]


_GRID: dict[tuple[str, str | None], int] = {}


def grid_size(space: dict[str, list[Any]], fmt: str | None) -> int:
    key = (repr(sorted(space.items())), fmt)
    if key not in _GRID:
        _GRID[key] = len(grid(space, fmt))
    return _GRID[key]


def promise(state: SearchState, trial: dict[str, Any], dims: tuple[str, ...]) -> float:
    """How good the values a trial moves to were elsewhere: the best throughput measured with the
    same values of the swept settings (0 where none was measured)."""
    return max(
        (
            r["throughput"]
            for r in state.rows
            if r.get("status") == Status.OK
            and r.get("throughput") is not None
            and all(_values(r["trial"]).get(d) == trial[d] for d in dims)
        ),
        default=0.0,
    )


@functools.lru_cache(maxsize=65536)
def _values(text: str) -> dict[str, Any]:
    return parse_trial(text)


def propose(
    state: SearchState,
    starts: int = STARTS,
    share: float = TRIAL_SHARE,
    blocks: list[tuple[str, ...]] | None = None,
) -> list[dict[str, Any]]:
    """Every climber's next step: the start's pass whole; the rest within the budget, in the
    climbers' order, each step's most promising trials first."""
    blocks = blocks if blocks is not None else BLOCKS
    schedule = pairs(state.space)
    space = full_space(state.space)  # the pass sweeps a dimension the space omits at its default
    budget = int(share * grid_size(state.space, state.fmt)) - len(state.done)
    found: dict[str, dict[str, Any]] = {}
    for k, origin in enumerate(spread_starts(state.space, state.start, starts, state.fmt)):
        at, trials = climb_step(state, origin, blocks, schedule)
        if k == 0 and at < len(blocks):  # the start's pass: whole, the rest of it held back
            found.update((trial_id(t), t) for t in trials)
            budget -= sum(math.prod(len(space[d]) for d in b) for b in blocks[at + 1 :])
            continue
        block = blocks[at] if at < len(blocks) else schedule[(at - len(blocks)) % len(schedule)]
        trials = sorted(trials, key=lambda t: -promise(state, t, block))
        for trial in trials[: max(0, budget - len(found))]:
            found.setdefault(trial_id(trial), trial)
    return list(found.values())
