"""`rlfm-edge bench robot`: tasks, the bins rule, terminal handling, determinism, resume, CLI."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

from rlfm_edge.bench.robot import run_discrete, run_one, run_robot_experiment
from rlfm_edge.bench.robot_actors import TabularActor, make_actor
from rlfm_edge.bench.robot_tasks import (
    PENDULUM_MIN_REWARD,
    TASKS,
    RobotTask,
    bins_per_dimension,
    get_task,
    robot_config,
    robot_config_text,
)
from rlfm_edge.cli import main
from rlfm_edge.runtime.robot_config import RobotConfig

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "robot_tasks"


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """The model's engine sets torch's (process-wide) thread count to 1, as a bench worker wants."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def configs() -> dict[str, dict]:
    return {name: robot_config(task) for name, task in TASKS.items()}


# -- tasks and the bins rule -------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TASKS))
def test_committed_configs_are_what_the_bins_rule_gives(name):
    assert (EXAMPLES / f"{name}.yaml").read_text() == robot_config_text(get_task(name)), (
        f"examples/robot_tasks/{name}.yaml differs from the rule: run "
        f"`rlfm-edge bench robot-configs`")


def test_bins_rule_uses_the_most_equal_bins_within_128_states(configs):
    assert [bins_per_dimension(d) for d in (4, 2, 6, 3)] == [3, 11, 2, 5]
    states = {name: RobotConfig.from_dict(c).discretizer.n_states for name, c in configs.items()}
    assert states == {"cartpole": 81, "mountaincar": 121, "acrobot": 64, "pendulum": 125}
    kinds = {name: c["terminal_state"] for name, c in configs.items()}
    assert kinds == {"cartpole": "failure", "mountaincar": "goal", "acrobot": "goal",
                     "pendulum": False}
    assert {c["horizon"] for c in configs.values()} == {100}


def test_rewards_are_scaled_affinely_to_unit_range():
    assert get_task("cartpole").scale(1.0) == 1.0
    assert get_task("mountaincar").scale(-1.0) == 0.0
    assert get_task("acrobot").scale(0.0) == 1.0
    pendulum = get_task("pendulum")
    assert pendulum.scale(PENDULUM_MIN_REWARD) == 0.0 and pendulum.scale(0.0) == 1.0
    assert pendulum.scale(PENDULUM_MIN_REWARD / 2) == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [(-math.inf, 0.0), (0.0, math.nan), (1.0, 1.0), None])
def test_a_task_whose_rewards_cannot_be_scaled_is_refused(bad):
    with pytest.raises(ValueError, match="reward_range"):
        RobotTask("x", "CartPole-v1", bad, "failure", ("a",), ("l", "r"))


def test_pendulum_takes_three_torque_levels():
    env = get_task("pendulum").make_env()
    assert env.action_space == gym.spaces.Discrete(3)
    assert env.action(0)[0] == -2.0 and env.action(2)[0] == 2.0


# -- terminal handling ------------------------------------------------------------------------
def test_a_fall_is_absorbing_and_worth_zero_for_the_model_and_the_tabular_agents(configs):
    cfg = RobotConfig.from_dict(configs["cartpole"])
    T = cfg.discretizer.n_states
    for agent in ("planning", "psrl"):
        actor = make_actor(agent, cfg, seed=0)
        record = run_discrete(get_task("cartpole"), actor, 3, seed=0)
        assert record["terminated"] == [True] * 3  # random-ish CartPole falls long before 500
        stats = actor.stats if agent == "planning" else actor.agent.stats
        assert stats.n_sa[T].tolist() == [3, 3]  # one self-loop per action per fall
        assert stats.n_sas[T, :, T].tolist() == [3, 3] and stats.reward_sum[T].sum() == 0.0


def test_a_goal_is_absorbing_and_worth_one_per_step(configs):
    cfg = RobotConfig.from_dict(configs["mountaincar"])
    actor = make_actor("ucbvi", cfg, seed=0)
    actor.step([-0.5, 0.0], None)
    actor.terminate(0.0, kind="goal")
    T = cfg.discretizer.n_states
    stats = actor.agent.stats
    assert stats.n_sas[:T, :, T].sum() == 1  # the step into the goal
    assert stats.n_sas[T, :, T].tolist() == [1, 1, 1]
    assert stats.reward_sum[T].tolist() == [1.0, 1.0, 1.0]


def test_a_truncation_is_neither(configs, monkeypatch):
    monkeypatch.setattr(RobotTask, "make_env",
                        lambda self: gym.make(self.env_id, max_episode_steps=4))
    cfg = RobotConfig.from_dict(configs["cartpole"])
    actor = make_actor("psrl", cfg, seed=0)
    record = run_discrete(get_task("cartpole"), actor, 2, seed=0)
    assert record["terminated"] == [False, False] and record["steps"] == [4, 4]
    stats = actor.agent.stats
    T = cfg.discretizer.n_states
    assert stats.n_transitions == 8  # every step's transition, the last one included
    assert stats.n_sas[:, :, T].sum() == 0 and stats.n_sa[T].sum() == 0


def test_tabular_actor_refuses_a_wrong_observation_length(configs):
    from rlfm_edge.runtime.online_agent import InvalidObservation

    actor = make_actor("random", RobotConfig.from_dict(configs["cartpole"]), seed=0)
    assert isinstance(actor, TabularActor)
    with pytest.raises(InvalidObservation, match="observation: expected 4 values, got 3"):
        actor.step([0.0, 0.0, 0.0], None)


# -- determinism, resume, bad configs ---------------------------------------------------------
@pytest.mark.parametrize("agent", ["rlfm", "psrl"])
def test_same_seed_same_returns(configs, agent):
    runs = [run_one("cartpole", agent, 5, 3, configs["cartpole"], "torch", None, {})
            for _ in range(2)]
    assert runs[0]["returns"] == runs[1]["returns"]
    assert runs[0]["steps"] == runs[1]["steps"]


def test_every_agent_sees_the_same_initial_states(configs):
    firsts = []
    for agent in ("random", "qlearning"):
        env_obs = []
        actor = make_actor(agent, RobotConfig.from_dict(configs["cartpole"]), seed=2)
        step = actor.step
        actor.step = lambda obs, r, _step=step, _seen=env_obs: (_seen.append(list(obs)), _step(obs, r))[1]
        run_discrete(get_task("cartpole"), actor, 2, seed=2)
        firsts.append(env_obs[0])
    assert firsts[0] == firsts[1]


@pytest.mark.slow
def test_resume_skips_finished_runs_and_refuses_other_options(tmp_path):
    kw = dict(tasks=["cartpole"], agents=["random", "psrl"], n_seeds=2, out=tmp_path,
              workers=2, progress=False)
    first = run_robot_experiment(episodes=2, **kw)
    assert first["complete"] and len(first["runs"]) == 4
    files = sorted((tmp_path / "runs").glob("*.json"))
    assert [f.name for f in files] == ["cartpole__psrl__0.json", "cartpole__psrl__1.json",
                                       "cartpole__random__0.json", "cartpole__random__1.json"]
    stamps = [f.stat().st_mtime_ns for f in files]
    files[0].unlink()  # as if interrupted before this run finished
    again = run_robot_experiment(episodes=2, **kw)
    assert again["complete"] and len(again["runs"]) == 4
    assert [f.stat().st_mtime_ns for f in files[1:]] == stamps[1:]  # not rerun
    assert again["runs"]["cartpole", "psrl", 0]["returns"] == \
        first["runs"]["cartpole", "psrl", 0]["returns"]  # rerun, same numbers
    with pytest.raises(ValueError, match="other options"):
        run_robot_experiment(episodes=3, **kw)


@pytest.mark.slow
def test_ctrl_c_keeps_the_finished_runs_and_stops_the_workers(tmp_path, monkeypatch):
    from rlfm_edge.bench import robot

    calls = []

    def wait_then_interrupt(objects):
        if calls:  # the user presses Ctrl-C while the second run is under way
            raise KeyboardInterrupt
        calls.append(1)
        return real_wait(objects)

    real_wait = robot.multiprocessing.connection.wait
    monkeypatch.setattr(robot.multiprocessing.connection, "wait", wait_then_interrupt)
    started = time.monotonic()
    result = run_robot_experiment(["cartpole"], ["psrl"], 2, 3, tmp_path, workers=1,
                                  progress=False)
    assert not result["complete"]
    assert list(result["runs"]) == [("cartpole", "psrl", 0)]
    assert [f.name for f in (tmp_path / "runs").glob("*.json")] == ["cartpole__psrl__0.json"]
    assert time.monotonic() - started < 60  # did not wait for the remaining runs


def _write_config(tmp_path: Path, raw: dict) -> Path:
    folder = tmp_path / "configs"
    folder.mkdir(exist_ok=True)
    (folder / "cartpole.yaml").write_text(yaml.safe_dump(raw))
    return folder


def test_a_config_with_more_states_than_the_model_serves_is_refused(tmp_path, configs):
    raw = json.loads(json.dumps(configs["cartpole"]))
    for d in raw["discretizer"]["dimensions"]:
        d.pop("edges")
        d["bins"] = 5  # 625 states
    folder = _write_config(tmp_path, raw)
    with pytest.raises(ValueError, match="discretizer: bins .* give 625 states but the model serves"):
        run_robot_experiment(["cartpole"], ["rlfm"], 2, 1, tmp_path / "out", config_dir=folder,
                             progress=False)


def test_a_config_of_the_wrong_observation_length_is_refused(tmp_path, configs):
    raw = json.loads(json.dumps(configs["cartpole"]))
    raw["discretizer"]["dimensions"].pop()
    folder = _write_config(tmp_path, raw)
    with pytest.raises(ValueError, match="discretizer.dimensions: 3 dimensions, but CartPole-v1"):
        run_robot_experiment(["cartpole"], ["psrl"], 2, 1, tmp_path / "out", config_dir=folder,
                             progress=False)


def test_auto_backend_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--backend"):
        run_robot_experiment(["cartpole"], ["rlfm"], 2, 1, tmp_path, backend="auto",
                             progress=False)


# -- deep-RL references and the CLI --------------------------------------------------------------
def test_dqn_runs_exactly_the_episodes_asked_with_native_returns():
    pytest.importorskip("stable_baselines3", reason="the bench extra (stable-baselines3) is missing")
    from rlfm_edge.bench.robot_deep import run_deep

    record = run_deep("dqn", get_task("cartpole"), 3, seed=1)
    again = run_deep("dqn", get_task("cartpole"), 3, seed=1)
    assert len(record["returns"]) == 3 and record["returns"] == again["returns"]
    assert record["returns"] == [float(n) for n in record["steps"]]  # +1 per step, native
    assert record["hyperparameters"]["entry"]["learning_rate"] == 2.3e-3


@pytest.mark.slow
def test_cli_smoke_run_writes_the_report_and_records_it(tmp_path, capsys):
    out, md = tmp_path / "out", tmp_path / "BENCH.md"
    rc = main(["bench", "robot", "--tasks", "cartpole", "--agents", "rlfm,random", "--episodes",
               "3", "--seeds", "2", "--out", str(out), "--no-progress", "--record", str(md)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "rlfm − best tabular" not in text  # no tabular learner ran: no such target row
    results = json.loads((out / "results.json").read_text())
    assert {(r["agent"], r["seed"]) for r in results["runs"]} == {
        ("rlfm", 0), ("rlfm", 1), ("random", 0), ("random", 1)}
    assert all(len(r["returns"]) == 3 for r in results["runs"])
    assert (out / "learning_curves.png").stat().st_size > 0
    assert "| CartPole-v1 ≥ 475 | rlfm | 2 |" in (out / "results.md").read_text()
    recorded = md.read_text()
    assert "rlfm-edge bench robot --tasks cartpole --agents rlfm,random --episodes 3" in recorded
    assert np.isfinite(results["summary"][0]["first_3"][0])
