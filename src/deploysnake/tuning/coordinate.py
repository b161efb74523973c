"""coordinate: one dimension a round around the best trial so far, and the climber the other local
searches are built from.

`coordinate` (the strategy): round 0 measures the untuned configuration and every option of the
first dimension in SWEEP_ORDER; round N sweeps dimension N the same way around the best trial so
far. One pass costs 1 + sum(options - 1) measurements where the grid costs their product; the search
ends at max_rounds, or when every dimension has been swept around the best. It stops at a
coordinate-wise optimum: where two settings only pay together (dynamic batching and a second
instance, measured in a quiet `make bench`), neither sweep alone leaves the local best.

`climb` is a block coordinate climber (Wright, "Coordinate descent algorithms", Math. Program.
2015): each step sweeps every combination of one block of dimensions around its own best, cycling
through the blocks until no block has anything left. It keeps no state between rounds: a climber's
history is replayed from the measured trials (each step depends only on the climber's own earlier
steps and their measured values), and a step whose trials are all measured already (by another
climber, or an earlier search) is taken at once, so each round proposes every climber's next
unmeasured step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .space import sweep, trial_id
from .state import SearchState

# The coordinate search's order: the settings that move CPU throughput most come first (Triton's
# optimization guide: dynamic batching, then instances), so later sweeps start from a good point.
SWEEP_ORDER = [
    "dynamic_batching",
    "instances",
    "runtime_threads",
    "max_queue_delay_us",
    "preferred_batch_sizes",
    "max_batch_size",
    "execution_mode",
    "inter_op_threads",
    "graph_optimization_level",
]


def coordinate(
    space: dict[str, list[Any]],
    start: dict[str, Any],
    done: set[str],
    best: dict[str, Any] | None,
    round_no: int,
    fmt: str | None = None,
) -> list[dict[str, Any]]:
    """Round N sweeps dimension N (cyclically) around the best trial; a dimension with nothing left
    to measure there (already swept, or meaningless: no queue delay without dynamic batching) passes
    the round to the next one. Nothing left in any dimension: the best is a coordinate-wise optimum."""
    if round_no == 0:
        return [start, *sweep(start, SWEEP_ORDER[0], space, fmt)]
    centre = best if best is not None else start
    for k in range(len(SWEEP_ORDER)):
        dim = SWEEP_ORDER[(round_no + k) % len(SWEEP_ORDER)]
        if fresh := [t for t in sweep(centre, dim, space, fmt) if trial_id(t) not in done]:
            return fresh
    return []


def propose(state: SearchState) -> list[dict[str, Any]]:
    return coordinate(state.space, state.start, state.done, state.best(), state.round_no, state.fmt)


def climb(
    state: SearchState,
    start: dict[str, Any],
    blocks: Sequence[tuple[str, ...]],
    then: Sequence[tuple[str, ...]] | None = None,
    max_steps: int = 200,
) -> list[dict[str, Any]]:
    """One block coordinate climber from `start`: its next step with a trial not yet measured ([]
    once no block around its best has anything it has not measured). Step 0 is the start and the
    first block's sweep around it; step S sweeps block S around the best of the climber's own
    trials: `blocks` once, then `then` cyclically (default: `blocks` again); a block with nothing new
    passes the step to the next."""
    return climb_step(state, start, blocks, then, max_steps)[1]


def climb_step(
    state: SearchState,
    start: dict[str, Any],
    blocks: Sequence[tuple[str, ...]],
    then: Sequence[tuple[str, ...]] | None = None,
    max_steps: int = 200,
) -> tuple[int, list[dict[str, Any]]]:
    """climb's next step as (its place in the schedule, its trials not yet measured): the place
    counts the blocks the climber has swept or passed, so one below len(blocks) is the first
    pass's."""
    schedule = then if then is not None else blocks

    def block_at(step: int) -> tuple[str, ...]:
        if step < len(blocks):
            return blocks[step]
        return schedule[(step - len(blocks)) % len(schedule)]

    own: set[str] = set()
    for step in range(max_steps):
        at = step
        if step == 0:
            proposals = [start, *sweep(start, blocks[0], state.space, state.fmt)]
        else:
            centre = state.best(own) or start
            proposals = []
            for k in range(len(blocks) + len(schedule)):
                proposals = [
                    t
                    for t in sweep(centre, block_at(step + k), state.space, state.fmt)
                    if trial_id(t) not in own
                ]
                if proposals:
                    at = step + k
                    break
        if not proposals:
            return at, []
        ids = {trial_id(t) for t in proposals}
        if ids - state.done:
            return at, [t for t in proposals if trial_id(t) not in state.done]
        own |= ids
    return max_steps, []
