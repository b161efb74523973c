"""Tuning stage: search Triton's configuration space, and the runtime's own knobs, for the highest
throughput within a p99 budget.

A trial is one configuration (tuning.space: max batch size, dynamic batching, queue delay, preferred
batch sizes, instances, runtime threads, and ONNX Runtime's execution mode, inter-op threads and graph
optimization level), named by a Paramspace-style id and measured by its own cached job (tuning.trial).
A strategy proposes trials in rounds, each round a Snakemake checkpoint planned from every trial
measured before it (tuning.plan); one module per strategy, as Model Analyzer's config generators:
- brute_force: the whole grid in round 0 (the reference);
- joint (default): block coordinate climbers from three starts, settings swept in pairs, held to a
  tenth of the grid;
- restarts: coordinate climbers from several spread starting points;
- coordinate: one dimension a round around the best (stops at coordinate-wise optima);
- hill_climb: the neighbours of the best, one step along any dimension.
Trials already measured are never proposed again, so a stopped search resumes where it was and a
larger budget (more rounds, a wider space) only adds trials. tuning.replay runs the strategies
offline against recorded or synthetic landscapes (benchmarks/search_replay.py).

A trial is one short measurement, and the search's best is the largest of many noisy numbers; so the
chosen and the untuned configurations are then measured again side by side (tuning.trial.side_by_side:
rounds in rotating order, each measurement a fresh server), and the report's gain is the ratio of
those medians.
"""

from __future__ import annotations

from .coordinate import SWEEP_ORDER
from .plan import (
    STRATEGIES,
    choose,
    gain,
    plan_round,
    propose,
    shortlist,
    summarize_side_by_side,
)
from .space import (
    CORE,
    DIMENSIONS,
    GRAPH_LEVELS,
    KNOBS,
    LONG,
    NEWCOMER,
    SHORT,
    canonical,
    full_space,
    grid,
    naive,
    neighbours,
    newcomer,
    parse_trial,
    sweep,
    trial_id,
    triton_settings,
)
from .state import TRIAL_COLUMNS, SearchState, incumbent, ranked, read_trials
from .trial import (
    SIDE_BY_SIDE_COLUMNS,
    load_point,
    measure_trial,
    rotated,
    run_trial,
    side_by_side,
)

__all__ = [
    "CORE",
    "DIMENSIONS",
    "GRAPH_LEVELS",
    "KNOBS",
    "LONG",
    "NEWCOMER",
    "SHORT",
    "SIDE_BY_SIDE_COLUMNS",
    "STRATEGIES",
    "SWEEP_ORDER",
    "TRIAL_COLUMNS",
    "SearchState",
    "canonical",
    "choose",
    "full_space",
    "grid",
    "incumbent",
    "load_point",
    "measure_trial",
    "naive",
    "neighbours",
    "newcomer",
    "parse_trial",
    "plan_round",
    "propose",
    "ranked",
    "read_trials",
    "rotated",
    "run_trial",
    "shortlist",
    "side_by_side",
    "summarize_side_by_side",
    "gain",
    "sweep",
    "trial_id",
    "triton_settings",
]
