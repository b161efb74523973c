"""brute_force: the whole grid in round 0, the reference the other strategies are measured against."""

from __future__ import annotations

from typing import Any

from .space import grid
from .state import SearchState


def propose(state: SearchState) -> list[dict[str, Any]]:
    return grid(state.space, state.fmt) if state.round_no == 0 else []
