"""The search strategies offline (deploysnake.tuning.replay: no server), the runtime's knobs in the
tuning space, and the knobs in config.pbtxt as Triton's backends and the bundled runner read them
(real ONNX Runtime on a small ONNX graph)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from deploysnake import tuning
from deploysnake.configuration import validate
from deploysnake.repository import build_config, runtime_parameters
from deploysnake.runtime import ArtifactRuntime, options_from_config
from deploysnake.tuning import replay

from .conftest import ROOT


def quality(strategy: str, landscape: replay.Landscape, seeds: int, noise: float) -> list[float]:
    """True throughput of each run's choice over the true optimum."""
    best = landscape.true_best()
    return [
        landscape.true(replay.search(strategy, landscape, random.Random(k), noise).chosen) / best
        for k in range(seeds)
    ]


def test_coordinate_stops_at_the_recorded_local_optimum_and_joint_does_not() -> None:
    """The quiet `make bench` failure: from the untuned configuration (batching on, one instance),
    batching off wins the first sweep and a second instance alone loses, so coordinate search ends
    at one instance without batching, 0.64 of the best; joint sweeps batching x instances at once."""
    landscape = replay.Landscape("recorded", replay.DEFAULT_SPACE, replay.recorded_failure)
    old = quality("coordinate", landscape, 1, noise=0.0)
    assert old[0] < 0.7
    chosen = replay.search("coordinate", landscape, random.Random(0), noise=0.0).chosen
    assert "db~0" in chosen and "inst~1" in chosen
    # with the bench's noise, every run of joint finds two instances with batching; what remains is
    # the noise between close neighbours (queue delay, max batch size: a few %)
    for k in range(10):
        chosen = replay.search("joint", landscape, random.Random(k)).chosen
        assert "db~1" in chosen and "inst~2" in chosen, chosen
        assert landscape.true(chosen) / landscape.true_best() >= 0.9
    trials = replay.search("joint", landscape, random.Random(0), noise=0.0).trials
    assert trials <= 0.10 * len(landscape.table), trials


def test_restarts_reach_095_of_brute_force_at_a_tenth_of_its_trials() -> None:
    """On the larger space (the runtime's knobs added, max_rounds 15 as docs/tuning.md advises for it)
    five runs on the recorded failure's landscape each reach 0.95 of brute force's choice with at most
    10 % of the grid's trials; on a separable one, where close settings differ by less than the
    noise, 0.9."""
    for truth, floor in ((replay.recorded_failure, 0.95), (replay.separable, 0.9)):
        found = [replay.Landscape("knobs", replay.KNOB_SPACE, truth)]
        for summary in replay.evaluate(["restarts"], found, seeds=5, max_rounds=15):
            assert summary.quality_min >= floor, summary
            assert summary.trials_fraction <= 0.10, summary


def test_joint_on_the_space_with_the_runtime_knobs_over_seeds() -> None:
    """On the larger space (max_rounds 15, as docs/tuning.md advises for it), 20 runs on each of the
    recorded shapes and the separable one: joint's choice reaches 0.95 of brute force's in 90 % of
    the runs or more and 0.9 in every run, at no more than a tenth of the grid's trials. (The top of
    these landscapes is flat within the noise: the worst runs choose a trial 0.91-0.93 of the optimum
    that one lucky measurement put in the side by side.) The earlier joint reached 0.95 in 13 runs of
    20 on the close basins, its worst 0.84."""
    found = [
        replay.Landscape(name, replay.KNOB_SPACE, truth)
        for name, truth in (
            ("recorded failure", replay.recorded_failure),
            ("close basins", replay.close_basins),
            ("separable", replay.separable),
        )
    ]
    for summary in replay.evaluate(["joint"], found, seeds=20, max_rounds=15):
        assert summary.share_at_095 >= 0.9 and summary.quality_min >= 0.9, summary
        assert summary.trials_fraction <= 0.10, summary


def searched(
    strategy: str, landscape: replay.Landscape, factor: Any, max_rounds: int = 6
) -> list[dict[str, Any]]:
    """The rows of a search whose measurement of trial t in round r is its true throughput x
    factor(t, r): the noise chosen, not drawn."""
    rows: list[dict[str, Any]] = []
    for round_no in range(max_rounds):
        trials = tuning.propose(
            replay.VARIANTS[strategy], landscape.space, landscape.start, rows, round_no, 10_000, 0
        )
        for trial in trials:
            throughput, p99 = landscape.table[tuning.trial_id(trial)]
            rows.append(
                {
                    "trial": tuning.trial_id(trial),
                    "status": "ok",
                    "throughput": throughput * factor(trial, round_no),
                    "p99_us": p99,
                }
            )
    return rows


def test_joint_climbs_the_basin_one_unlucky_round_hid() -> None:
    """The quiet `make bench` run where joint reached 0.930 of brute force (replay.close_basins):
    two instances with the default threads are x1.07 better than one instance with one thread, and
    round 0 measured every two-instance trial 12 % low (within a trial's noise). The earlier joint
    (batching x instances x threads once, then single settings) climbs the one instance and, at the
    default max_rounds, ends 6 % short; the climbers from spread starts (the first two instances
    without batching) and the instances x threads pair after the pass measure two instances again,
    and the search ends at the best, within a tenth of the grid."""
    landscape = replay.Landscape("close basins", replay.DEFAULT_SPACE, replay.close_basins)

    def unlucky(trial: dict[str, Any], round_no: int) -> float:
        return 0.88 if round_no == 0 and trial["instances"] == 2 else 1.0

    best = landscape.true_best()
    for strategy, floor, ceiling in (("joint_single", 0.0, 0.95), ("joint", 0.999, 1.0)):
        rows = searched(strategy, landscape, unlucky)
        found = tuning.incumbent(rows, 10_000)[0]
        assert found is not None
        assert floor <= landscape.true(found["trial"]) / best <= ceiling, (strategy, found)
    assert len(rows) <= 0.10 * len(landscape.table)


def test_joint_reaches_095_of_brute_force_over_seeds_on_the_default_space() -> None:
    """With the bench's noise (replay.NOISE), 20 runs on each of the default space's recorded
    shapes, each choice made as the workflow makes it (its two best trials and the untuned one
    measured again side by side): joint's reaches 0.95 of brute force's choice in 19 runs of 20 or
    more, and 0.93 in every run, at no more than a tenth of the grid's trials. The earlier joint
    reached 0.95 in 13 runs of 20 on the close basins, its worst 0.86, at 0.10-0.11 of the grid."""
    found = [
        replay.Landscape("recorded failure", replay.DEFAULT_SPACE, replay.recorded_failure),
        replay.Landscape("close basins", replay.DEFAULT_SPACE, replay.close_basins),
    ]
    for summary in replay.evaluate(["joint"], found, seeds=20):
        assert summary.share_at_095 >= 0.95 and summary.quality_min >= 0.93, summary
        assert summary.trials_fraction <= 0.10, summary


def test_a_strategy_never_proposes_a_measured_trial_and_ends() -> None:
    landscape = replay.Landscape("rugged", replay.KNOB_SPACE, replay.rugged(3))
    for strategy in ("joint", "restarts"):
        rows: list[dict[str, Any]] = []
        for round_no in range(50):
            trials = tuning.propose(
                strategy, landscape.space, landscape.start, rows, round_no, 10_000, 0
            )
            ids = [tuning.trial_id(t) for t in trials]
            assert len(set(ids)) == len(ids) and not set(ids) & {r["trial"] for r in rows}
            if not ids:
                break
            rows += [
                {"trial": t, "status": "ok", "throughput": landscape.table[t][0], "p99_us": 1.0}
                for t in ids
            ]
        assert not ids, f"{strategy} still proposing after 50 rounds"
        assert len(rows) < len(landscape.table) / 5


def test_restarts_start_from_points_spread_across_the_space() -> None:
    from deploysnake.tuning.restarts import spread_starts

    space = tuning.full_space(replay.DEFAULT_SPACE)
    start = tuning.naive(replay.UNTUNED, "cpu", space)
    starts = spread_starts(space, start, 3)
    assert starts[0] == start and len({tuning.trial_id(s) for s in starts}) == 3
    # the farthest point from batching on, one instance, default threads: batching off, two instances
    assert (starts[1]["dynamic_batching"], starts[1]["instances"]) == (False, 2)


def test_runtime_knobs_in_trial_ids_only_away_from_their_defaults() -> None:
    plain = tuning.parse_trial("mbs~256_db~1_delay~100_pref~max_inst~2_thr~1")
    assert plain["execution_mode"] == "sequential" and plain["inter_op_threads"] == 0
    assert tuning.trial_id(plain) == "mbs~256_db~1_delay~100_pref~max_inst~2_thr~1"
    knobs = {**plain, "execution_mode": "parallel", "inter_op_threads": 2}
    knobs["graph_optimization_level"] = "basic"
    text = tuning.trial_id(knobs)
    assert text.endswith("_thr~1_exec~parallel_inter~2_graph~basic")
    assert tuning.parse_trial(text) == knobs
    # sequential execution ignores inter-op threads (ONNX Runtime); torch has no execution mode
    assert tuning.canonical({**knobs, "execution_mode": "sequential"})["inter_op_threads"] == 0
    torch = tuning.canonical(knobs, "torchscript_trace")
    assert (torch["execution_mode"], torch["inter_op_threads"]) == ("sequential", 2)
    grid = tuning.grid(replay.KNOB_SPACE)
    # sequential: 4 levels; parallel: 2 inter-op counts x 4 levels
    assert len(grid) == len(tuning.grid(replay.DEFAULT_SPACE)) * (4 + 2 * 4)
    assert len(tuning.grid(replay.KNOB_SPACE, "torchscript_trace")) == 234 * 2


def test_the_default_config_space_adds_no_trial_and_the_schema_takes_the_knobs() -> None:
    import yaml

    config = validate(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    space = config["tuning"]["space"]
    assert len(tuning.grid(space)) == 234 and config["tuning"]["strategy"] == "joint"
    assert (config["triton"]["execution_mode"], config["triton"]["inter_op_threads"]) == (
        "sequential",
        0,
    )
    config["tuning"]["space"] = {**space, "execution_mode": ["sequential", "parallel"]}
    assert len(tuning.grid(validate(config)["tuning"]["space"])) == 234 * 2
    with pytest.raises(Exception, match="execution_mode"):
        validate({**config, "triton": {**config["triton"], "execution_mode": "fast"}})


def tiny_onnx(path: Path) -> dict[str, Any]:
    """A two-branch ONNX graph (x -> relu, x -> sigmoid, added) with a dynamic batch; its io.json."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Sigmoid", ["x"], ["b"]),
            helper.make_node("Add", ["a", "b"], ["y"]),
        ],
        "branches",
        [x],
        [y],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    tensor = {"dtype": "float32", "dims": [-1, 4], "batch_axis": 0}
    return {
        "format": "onnx",
        "artifact": path.name,
        "inputs": [{"name": "x", **tensor}],
        "outputs": [{"name": "y", **tensor}],
    }


def test_chosen_knobs_reach_config_pbtxt_and_the_bundled_runner_reads_them(tmp_path: Path) -> None:
    """A trial with the runtime's knobs: its triton settings give the deploy config.pbtxt the
    onnxruntime backend's parameters and graph level (parsed with tritonclient's ModelConfig), and the
    bundled runner, reading that config as Triton hands it over (JSON), builds its ONNX Runtime
    session with the same options (read back from the session)."""
    import numpy as np
    from google.protobuf import text_format

    io = tiny_onnx(tmp_path / "model.onnx")
    trial = tuning.parse_trial(
        "mbs~64_db~1_delay~100_pref~max_inst~2_thr~1_exec~parallel_inter~2_graph~basic"
    )
    base = {"max_batch_size": 8, "instances": {"cpu": 1}, "dynamic_batching": {"enabled": True}}
    triton = tuning.triton_settings(base, trial, "cpu")
    for flavour in ("native", "inprocess", "python"):
        text = text_format.MessageToString(build_config("m_onnx", io, triton, "cpu", flavour))
        config = text_format.Parse(text, mc.ModelConfig())
        params = {k: v.string_value for k, v in config.parameters.items()}
        assert {k: params.get(k) for k in runtime_parameters("onnx", triton)} == {
            "intra_op_thread_count": "1",
            "inter_op_thread_count": "2",
            "execution_mode": "1",
        }
        assert config.optimization.graph.level == -1  # basic, as the onnxruntime backend reads it
        assert config.instance_group[0].count == 2 and config.max_batch_size == 64
        assert "threads" not in params
    options = options_from_config(
        json.loads(json_format.MessageToJson(config, preserving_proto_field_name=True))
    )
    assert options == {
        "threads": 1,
        "inter_op_threads": 2,
        "execution_mode": "parallel",
        "graph_optimization_level": "basic",
    }
    runtime = ArtifactRuntime(
        tmp_path / "model.onnx", "onnx", ["x"], ["y"], options.pop("threads"), "cpu", 2, **options
    )
    assert {k: runtime.settings[k] for k in list(runtime.settings)[1:]} == {
        "intra_op_num_threads": 1,
        "inter_op_num_threads": 2,
        "execution_mode": "ORT_PARALLEL",
        "graph_optimization_level": "ORT_ENABLE_BASIC",
    }
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(
        runtime({"x": x})["y"], np.maximum(x, 0) + 1 / (1 + np.exp(-x)), rtol=1e-6
    )
    # the defaults write nothing: a config as before, the runtime's own defaults
    plain = build_config("m_onnx", io, {**base, "runtime_threads": 0}, "cpu", "native")
    assert not plain.parameters and not plain.HasField("optimization")
    torch = runtime_parameters("torchscript_trace", triton)
    assert torch == {"INTRA_OP_THREAD_COUNT": "1", "INTER_OP_THREAD_COUNT": "2"}


def test_joint_plans_a_space_that_omits_the_runtime_knobs() -> None:
    """A space without the knobs (each then has its default as its one option, space.full_space)
    plans the start's pass as a full space would."""
    from deploysnake.tuning import joint
    from deploysnake.tuning.space import full_space
    from deploysnake.tuning.state import SearchState

    space = {"dynamic_batching": [False, True], "instances": [1, 2], "runtime_threads": [0, 1]}
    start = {d: options[0] for d, options in full_space(space).items()}
    partial = joint.propose(SearchState(space, start, [], 0, 1e9))
    full = joint.propose(SearchState(full_space(space), start, [], 0, 1e9))
    assert partial and sorted(map(str, partial)) == sorted(map(str, full))
