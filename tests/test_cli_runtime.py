"""robot.yaml validation and the `demo`, `replay`, `calibrate-bins` and `serve` commands."""

import json
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlfm_edge import cli
from rlfm_edge.cli.serve import dropped_summary, stop_on_sigterm
from rlfm_edge.discretize import Discretizer
from rlfm_edge.logs import TransitionLogger
from rlfm_edge.runtime import RobotConfig
from rlfm_edge.serial.protocol import DecoderCounters
from rlfm_edge.sim_robot import CARTPOLE_CONFIG
from rlfm_edge.stats import CountStats

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cartpole_robot.yaml"


def run(argv):
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def test_example_robot_config_is_the_one_the_demo_simulates():
    example = RobotConfig.load(EXAMPLE)
    demo = RobotConfig.from_dict(CARTPOLE_CONFIG)
    assert example.discretizer.to_config() == demo.discretizer.to_config()
    for field in ("n_actions", "horizon", "terminal_state", "mode", "temperature", "anneal_visits",
                  "refresh_every", "control_period_s"):
        assert getattr(example, field) == getattr(demo, field), field
    assert example.n_states == 109 and str(example.stats_path).endswith("cartpole.npz")
    assert 5 <= example.horizon <= 60  # the horizons the model was trained on


@pytest.mark.parametrize("change, message", [
    ({"n_actions": 0}, "n_actions: expected an integer >= 1"),
    ({"horizon": "long"}, "horizon: expected an integer"),
    ({"mode": "best"}, "mode: expected 'sample' or 'greedy'"),
    ({"safe_action": 2}, r"safe_action: expected null or an integer in \[0, 2\)"),
    ({"terminal_state": "yes"}, "terminal_state: expected false, true, .failure., .goal. or .both."),
    ({"temperature": -1}, "temperature: expected a number > 0"),
    ({"anneal_visits": 0}, "anneal_visits: expected a number > 0"),
    ({"refresh_niceness": -1}, "refresh_niceness: expected an integer >= 0"),
    ({"refresh_niceness": 20}, r"refresh_niceness: expected an integer in \[0, 19\]"),
    ({"statistics": {"path": "s.npz", "every": 3}}, r"statistics: unknown field\(s\) \['every'\]"),
    ({"statistics": {"save_every_s": 3}}, "statistics: expected a mapping with 'path'"),
    ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
    ({"version": True}, "version: expected 1, got True"),
    ({"log": 3}, "log: expected a file path, got 3"),
    ({"discretizer": {"dimensions": [{"low": 1, "high": 0, "bins": 2}]}},
     r"discretizer: dimensions\[0\]: expected finite low < high"),
])
def test_robot_config_errors_name_the_file_and_field(tmp_path, change, message):
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw.update(change)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=message) as info:
        RobotConfig.load(path)
    assert str(path) in str(info.value)


def test_robot_config_passes_the_refresh_niceness_to_the_agent():
    from rlfm_edge.inference.planning_engine import PlanningEngine

    cfg = RobotConfig.from_dict({**CARTPOLE_CONFIG, "refresh_niceness": 5, "statistics": None})
    assert RobotConfig.from_dict(CARTPOLE_CONFIG).refresh_niceness == 10
    with cfg.make_agent(PlanningEngine()) as agent:
        assert agent.refresh_niceness == 5


def test_robot_config_passes_anneal_visits_to_the_agent_and_null_keeps_the_temperature_fixed():
    from rlfm_edge.inference.base import DEFAULT_ANNEAL_VISITS
    from rlfm_edge.inference.planning_engine import PlanningEngine

    assert RobotConfig.from_dict(CARTPOLE_CONFIG).anneal_visits == DEFAULT_ANNEAL_VISITS
    assert RobotConfig.from_dict({**CARTPOLE_CONFIG, "anneal_visits": None}).anneal_visits is None
    cfg = RobotConfig.from_dict({**CARTPOLE_CONFIG, "anneal_visits": 12, "statistics": None})
    with cfg.make_agent(PlanningEngine()) as agent:
        assert agent.anneal_visits == 12.0


def test_robot_config_requires_the_sizes(tmp_path):
    path = tmp_path / "robot.yaml"
    path.write_text("discretizer: {dimensions: [{low: 0, high: 1, bins: 2}]}\nn_actions: 2\n")
    with pytest.raises(ValueError, match="horizon: required field missing"):
        RobotConfig.load(path)
    with pytest.raises(ValueError, match="robot config not found"):
        RobotConfig.load(tmp_path / "missing.yaml")


def _write_log(path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    disc = Discretizer.uniform([-1.0, -1.0], [1.0, 1.0], [3, 3], names=["pos", "vel"])
    disc_yaml = yaml.safe_dump(disc.to_config())
    live = CountStats(disc.n_states, 2)
    with TransitionLogger(path, disc.n_states, 2, horizon=20, discretizer_yaml=disc_yaml) as lg:
        prev = None
        for t in range(n):
            obs = rng.normal(0.0, [0.2, 0.5])
            s, a, r = disc.state(obs), int(rng.integers(2)), float(rng.random())
            if prev is not None:
                live.update(prev[0], prev[1], np.float32(r), s)
            lg.write(0, t, obs, s, a, r, *(prev or (-1, -1)), 1000)
            prev = (s, a)
    return live


def test_replay_rebuilds_the_statistics_of_a_log(tmp_path, capsys):
    live = _write_log(tmp_path / "run.mcap")
    assert run(["replay", str(tmp_path / "run.mcap"), "--out", str(tmp_path / "s.npz")]) == 0
    assert CountStats.load(tmp_path / "s.npz") == live
    assert "399 transitions" in capsys.readouterr().out


def test_calibrate_bins_fits_quantiles_of_the_recorded_observations(tmp_path):
    _write_log(tmp_path / "run.mcap")
    out = tmp_path / "disc.yaml"
    assert run(["calibrate-bins", str(tmp_path / "run.mcap"), "--bins", "4,2",
                "--out", str(out)]) == 0
    disc = Discretizer.load(out)
    assert disc.bins == (4, 2) and [d.name for d in disc.dimensions] == ["pos", "vel"]
    assert abs(disc.dimensions[0].edges[1]) < 0.05  # the median of N(0, 0.2)
    assert abs(disc.dimensions[1].edges[0]) < 0.1


def test_calibrate_bins_refuses_more_states_than_the_model_serves(tmp_path, capsys):
    _write_log(tmp_path / "run.mcap")
    rc = run(["calibrate-bins", str(tmp_path / "run.mcap"), "--bins", "20",
              "--max-states", "256", "--out", str(tmp_path / "d.yaml")])
    assert rc == 2 and "400 states" in capsys.readouterr().err
    assert not (tmp_path / "d.yaml").exists()


def _write_cartpole_like_log(path, terminal: int):
    """Four observation values, as CartPole's, recorded by an agent with 0, 1 or 2 terminal states."""
    rng = np.random.default_rng(1)
    disc = Discretizer.uniform([-1.0] * 4, [1.0] * 4, 3, names=["x", "v", "theta", "omega"])
    with TransitionLogger(path, disc.n_states + terminal, 2, horizon=40,
                          discretizer_yaml=yaml.safe_dump(disc.to_config())) as lg:
        for t in range(300):
            obs = rng.normal(0.0, 0.5, 4)
            lg.write(0, t, obs, disc.state(obs), int(rng.integers(2)), 1.0, -1, -1, 1000)


@pytest.mark.parametrize("terminal, bins", [(1, (4, 4, 4, 3)), (0, (4, 4, 4, 4)),
                                            (2, (4, 4, 4, 3))])
def test_calibrate_bins_by_default_fits_what_the_shipped_model_serves(tmp_path, capsys, terminal,
                                                                       bins):
    from rlfm_edge.model.io import DEFAULT_MODEL_DIR, load_config

    served = load_config(DEFAULT_MODEL_DIR).max_states
    assert served == 256  # the bins expected below are the most that fit in it
    _write_cartpole_like_log(tmp_path / "run.mcap", terminal)
    assert run(["calibrate-bins", str(tmp_path / "run.mcap"), "--out", str(tmp_path / "d.yaml")]) == 0
    disc = Discretizer.load(tmp_path / "d.yaml")
    assert disc.bins == bins and disc.n_states + terminal <= served
    assert [d.name for d in disc.dimensions] == ["x", "v", "theta", "omega"]
    assert f"at most {served} states, what the shipped model serves" in capsys.readouterr().out


def test_calibrate_bins_says_why_bins_are_too_many_and_what_fits(tmp_path, capsys):
    _write_cartpole_like_log(tmp_path / "run.mcap", terminal=1)
    rc = run(["calibrate-bins", str(tmp_path / "run.mcap"), "--bins", "6",
              "--out", str(tmp_path / "d.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp_path / "d.yaml").exists()
    assert ("--bins 6: 1296 states, more than the 255 that fit (at most 256 states, what the "
            "shipped model serves; the log's terminal state takes one); --bins auto picks "
            "4,4,4,3 (192 states)") in err


def test_largest_bins_are_as_even_as_possible_within_the_limit():
    from rlfm_edge.discretize import largest_bins

    assert largest_bins(4, 256) == [4, 4, 4, 4]
    assert largest_bins(4, 255) == [4, 4, 4, 3]
    assert largest_bins(2, 30) == [6, 5]
    assert largest_bins(1, 7) == [7]
    with pytest.raises(ValueError, match="9 dimensions need at least 512 states"):
        largest_bins(9, 255)


def test_replay_of_a_missing_log_says_so(tmp_path, capsys):
    assert run(["replay", str(tmp_path / "nope.mcap"), "--out", str(tmp_path / "s.npz")]) == 2
    assert "log file not found" in capsys.readouterr().err


def test_demo_writes_the_learning_curve_and_summary_and_explains_its_counters(tmp_path, capsys):
    rc = run(["demo", "--episodes", "3", "--backend", "planning", "--max-steps", "30",
              "--rate", "400", "--out", str(tmp_path), "--no-progress", "--log"])
    assert rc == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    for name in ("agent", "random"):
        run_ = summary["runs"][name]
        assert len(run_["returns"]) == 3 and run_["returns"] == run_["robot"]["returns"]
    assert summary["config"]["backend"] == "planning"
    assert (tmp_path / "learning_curve.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    counters = {**summary["runs"]["agent"]["agent_counters"], **summary["runs"]["agent"]}
    for name, meaning in summary["counter_meanings"].items():
        assert f"  {name} {counters[name]}: {meaning}" in printed
    assert {"late_refreshes", "clipped_values"} <= set(summary["counter_meanings"])
    log = tmp_path / "agent_log"  # a folder of segments, one per run
    assert summary["mcap_log"] == str(log) and f"the MCAP log {log}" in printed
    assert run(["replay", str(log), "--out", str(tmp_path / "s.npz")]) == 0  # the log it names


def test_bench_loop_reports_latency_memory_and_round_trip(tmp_path, capsys, monkeypatch):
    from rlfm_edge.cli import bench

    monkeypatch.setattr(bench, "BENCH_MODULES", [*bench.BENCH_MODULES, "bench_loop"]
                        if "bench_loop" not in bench.BENCH_MODULES else bench.BENCH_MODULES)
    md = tmp_path / "B.md"
    rc = run(["bench", "loop", "--duration", "0.3", "--states", "16", "--memory-steps", "2000",
              "--rtt-count", "20", "--out", str(tmp_path), "--record", str(md)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "`OnlineAgent.step` at 100 Hz, S=16" in printed and "pty round trip" in printed
    assert "no-op Python call, 30 ticks, agent closed" in printed  # the platform floor, as long as the loop
    assert "discretizer alone (`Discretizer.state`" in printed and "30 ticks, agent closed: median" in printed
    assert (tmp_path / "loop_jitter.png").stat().st_size > 10_000
    assert "rlfm-edge bench loop --duration 0.3" in md.read_text()
    assert run(["bench", "loop", "--states", "10", "--out", str(tmp_path)]) == 2


def test_serve_summary_names_the_causes_of_dropped_frames():
    assert dropped_summary(DecoderCounters(frames_ok=5)) == "0 frames dropped"
    assert dropped_summary(DecoderCounters(frames_ok=5, bad_crc=3, duplicates=2)) == \
        "5 frames dropped (bad_crc 3, duplicates 2)"


def test_serve_takes_sigterm_as_stop_while_serving_and_only_in_the_main_thread():
    before, stop = signal.getsignal(signal.SIGTERM), threading.Event()
    with stop_on_sigterm(stop):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    assert stop.is_set() and signal.getsignal(signal.SIGTERM) is before
    errors = []

    def elsewhere():
        try:
            with stop_on_sigterm(threading.Event()):
                pass
        except ValueError as exc:  # signal only works in main thread
            errors.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert errors == [] and signal.getsignal(signal.SIGTERM) is before


def test_serve_without_a_usable_model_ends_with_one_readable_line_per_backend(tmp_path, capsys):
    from rlfm_edge.inference import available_backends

    rc = run(["serve", "--port", str(tmp_path / "no-such-port"), "--config", str(EXAMPLE),
              "--model", str(tmp_path / "nonexistent")])
    err = capsys.readouterr().err.rstrip("\n").splitlines()
    assert rc == 2
    model_backends = [name for name in available_backends() if name != "planning"]
    head, lines = err[-len(model_backends) - 1], err[-len(model_backends):]
    assert head == "rlfm-edge serve: error: no inference backend can run here:"
    for name, line in zip(model_backends, lines, strict=True):
        assert line.startswith(f"  {name:12s} unavailable: ") and "{" not in line
    assert any(str(tmp_path / "nonexistent") in line for line in lines)
