"""restarts: coordinate climbers from several starting points at once, the untuned configuration and
points spread across the space, so a local optimum near the start is not the end of the search.

The other starts are chosen greedily, each the grid point farthest from those chosen before it
(maximin: the sum over dimensions of the distance between option positions, each dimension scaled to
[0, 1]; ties to the first in grid order), a deterministic space-filling design (Johnson, Moore and
Ylvisaker, "Minimax and maximin distance designs", 1990). The climbers share measurements: a trial
one of them measured is never measured again for another.
"""

from __future__ import annotations

from typing import Any

from .coordinate import SWEEP_ORDER, climb
from .space import grid, trial_id
from .state import SearchState

STARTS = 3


def spread_starts(
    space: dict[str, list[Any]], start: dict[str, Any], count: int, fmt: str | None = None
) -> list[dict[str, Any]]:
    """`start` and count - 1 grid points, each the farthest from those chosen before it (the same
    for the same arguments: kept, since every round of every search asks again)."""
    if count <= 1:
        return [start]
    key = (repr(sorted(space.items())), trial_id(start), count, fmt)
    if key not in _STARTS:
        _STARTS[key] = _spread(space, start, count, fmt)
    return [dict(t) for t in _STARTS[key]]


_STARTS: dict[tuple[str, str, int, str | None], list[dict[str, Any]]] = {}


def _spread(
    space: dict[str, list[Any]], start: dict[str, Any], count: int, fmt: str | None
) -> list[dict[str, Any]]:
    points = grid(space, fmt)

    def position(trial: dict[str, Any]) -> list[float]:
        return [
            space[d].index(trial[d]) / (len(space[d]) - 1) if len(space[d]) > 1 else 0.0
            for d in space
            if trial[d] in space[d]
        ]

    chosen = [start]
    placed = [position(start)]
    for _ in range(count - 1):
        best, far = None, -1.0
        for trial in points:
            p = position(trial)
            near = min(sum(abs(a - b) for a, b in zip(p, q, strict=False)) for q in placed)
            if near > far:
                best, far = trial, near
        if best is None or far <= 0:
            break
        chosen.append(best)
        placed.append(position(best))
    return chosen


def propose(state: SearchState, starts: int = STARTS) -> list[dict[str, Any]]:
    blocks: list[tuple[str, ...]] = [(d,) for d in SWEEP_ORDER]
    found: dict[str, dict[str, Any]] = {}
    for origin in spread_starts(state.space, state.start, starts, state.fmt):
        for trial in climb(state, origin, blocks):
            found.setdefault(trial_id(trial), trial)
    return list(found.values())
