"""hill_climb: round 0 measures the untuned configuration and its neighbours (one step along any
dimension); each later round the unmeasured neighbours of the best so far, until it has none."""

from __future__ import annotations

from typing import Any

from .space import neighbours
from .state import SearchState


def propose(state: SearchState) -> list[dict[str, Any]]:
    if state.round_no == 0:
        return [state.start, *neighbours(state.start, state.space, state.fmt)]
    best = state.best()
    return neighbours(best, state.space, state.fmt) if best else []
