"""joint (default): a block coordinate search whose first block sweeps jointly the settings that pay
only together: dynamic batching x instances x runtime threads (batching helps once a second instance
takes the batches; instances x threads share the cores); then the batcher's queue delay, preferred
sizes and max batch size one at a time, then the runtime's knobs jointly (ONNX Runtime's inter-op
threads count only in parallel execution); each block around the best so far. After that pass, single
settings again around the best (coordinate.climb) until none finds anything new. On the default space
one pass costs 12 + 3 + 2 + 2 trials (the start included) of the grid's 234. A quiet `make bench` saw
coordinate search stop at one instance without batching where two instances with batching were x1.57
better: a move of two coordinates at once, which the first block holds.
"""

from __future__ import annotations

from typing import Any

from .coordinate import SWEEP_ORDER, climb
from .restarts import spread_starts
from .space import trial_id
from .state import SearchState

BLOCKS = [
    ("dynamic_batching", "instances", "runtime_threads"),
    ("max_queue_delay_us",),
    ("preferred_batch_sizes",),
    ("max_batch_size",),
    ("execution_mode", "inter_op_threads", "graph_optimization_level"),
]


def propose(state: SearchState, starts: int = 1) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for origin in spread_starts(state.space, state.start, starts, state.fmt):
        for trial in climb(state, origin, BLOCKS, [(d,) for d in SWEEP_ORDER]):
            found.setdefault(trial_id(trial), trial)
    return list(found.values())
