import errno
import logging
import os
import threading
import time

import numpy as np
import pytest

from rlfm_edge.discretize import Discretizer
from rlfm_edge.inference.base import ModelLimitError
from rlfm_edge.inference.planning_engine import PlanningEngine
from rlfm_edge.logs import TransitionLogger, read_statistics, read_steps
from rlfm_edge.runtime import InvalidObservation, OnlineAgent, StatsPersistence
from rlfm_edge.stats import CountStats


class SlowEngine(PlanningEngine):
    """Test double for an engine that misses its deadline."""

    def __init__(self, delay):
        super().__init__()
        self.delay = delay
        self.started = threading.Event()

    def policy(self, stats, horizon):
        self.started.set()
        time.sleep(self.delay)
        return super().policy(stats, horizon)


class FailingEngine(PlanningEngine):
    """Test double: answers until ``fail`` is set, then raises or returns garbage."""

    def __init__(self, how="raise"):
        super().__init__()
        self.fail = threading.Event()
        self.how = how

    def policy(self, stats, horizon):
        if self.fail.is_set():
            if self.how == "raise":
                raise RuntimeError("engine crashed")
            return np.full((stats.n_states, stats.n_actions), np.nan)
        return super().policy(stats, horizon)


def _disc(bins=4):
    return Discretizer.uniform([0.0], [1.0], bins)


def _obs(state, bins=4):
    return [(state + 0.5) / bins]


def _greedy_actions(agent):
    """The action in each state, each probed as an episode's first step."""
    actions = []
    for s in range(4):
        agent.end_episode()
        actions.append(agent.step(_obs(s)))
    return actions


def _train_bandit(agent, steps=300, seed=0):
    """Action 1 earns 1, action 0 earns 0; states cycle."""
    agent.end_episode()
    rng = np.random.default_rng(seed)
    a, reward = None, None
    for t in range(steps):
        a = agent.step(_obs(int(rng.integers(4))), reward)
        reward = float(a == 1)
        if t % 20 == 19:
            agent.end_episode()
            reward = None


def test_agent_learns_the_better_action_with_the_planning_engine():
    with OnlineAgent(_disc(), PlanningEngine(bonus_scale=0.05), horizon=5, n_actions=2,
                     mode="greedy", refresh_every=5) as agent:
        _train_bandit(agent)
        assert agent.wait_refreshed(agent.request_refresh(), timeout=10)
        assert _greedy_actions(agent) == [1, 1, 1, 1]
        c = agent.counters
        assert c.refreshes >= 1 and c.episodes == 20 and c.transitions == 300 - 15


def test_first_step_of_an_episode_records_no_transition_and_ignores_its_reward():
    with OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2) as agent:
        agent.step(_obs(0), 123.0)
        assert agent.stats.n_transitions == 0
        a = agent.step(_obs(2), 0.5)
        assert agent.stats.n_transitions == 1
        assert agent.stats.R_hat()[0].sum() == 0.5 and agent.stats.n_sas[0, :, 2].sum() == 1
        agent.end_episode()
        agent.step(_obs(3), 9.0)
        assert agent.stats.n_transitions == 1
        assert 0 <= a < 2


def test_without_a_lag_bound_step_never_waits_for_a_slow_engine_and_uses_the_safe_action():
    engine = SlowEngine(0.5)
    agent = OnlineAgent(_disc(), engine, horizon=5, n_actions=3, safe_action=2, deadline_s=0.01,
                        max_policy_lag=None)
    assert engine.started.wait(5)
    actions, slowest = [], 0.0
    for i in range(50):  # a 500 Hz control loop while the 0.5 s refresh runs
        t0 = time.perf_counter()
        actions.append(agent.step(_obs(i % 4), 0.0 if i else None))
        slowest = max(slowest, time.perf_counter() - t0)
        time.sleep(0.002)
    assert slowest < 0.1
    assert actions == [2] * 50
    c = agent.counters
    assert c.safe_actions == 50 and c.late_refreshes == 1 and c.refreshes == 0
    agent.close()


def test_without_safe_action_the_fallback_is_uniform_random():
    engine = SlowEngine(0.5)
    agent = OnlineAgent(_disc(), engine, horizon=5, n_actions=3, seed=1, max_policy_lag=None)
    assert engine.started.wait(5)
    actions = [agent.step(_obs(0), 0.0 if i else None) for i in range(300)]
    assert min(np.bincount(actions, minlength=3)) > 60
    agent.close()


@pytest.mark.parametrize("how", ["raise", "nan"])
def test_engine_failure_keeps_the_last_good_policy(how):
    engine = FailingEngine(how)
    agent = OnlineAgent(_disc(), engine, horizon=5, n_actions=2, mode="greedy", refresh_every=5,
                        safe_action=0)
    _train_bandit(agent, steps=200)
    assert agent.wait_refreshed(agent.request_refresh(), timeout=10)
    good = _greedy_actions(agent)
    assert good == [1, 1, 1, 1]

    engine.fail.set()
    agent.end_episode()
    _train_bandit(agent, steps=60, seed=1)
    assert agent.wait_refreshed(agent.request_refresh(), timeout=10)
    assert _greedy_actions(agent) == good
    c = agent.counters
    assert c.refresh_failures >= 1
    agent.close()


@pytest.mark.parametrize("obs, reward", [([np.nan], 0.0), ([np.inf], 0.0), ([0.5], np.nan),
                                         ([0.5], -np.inf), ([0.5, 0.5], 0.0), ([0.5], None)])
def test_invalid_observation_or_reward_is_rejected_and_statistics_untouched(obs, reward):
    with OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2) as agent:
        agent.step(_obs(1), None)
        before = agent.stats.copy()
        with pytest.raises(InvalidObservation):
            agent.step(obs, reward)
        assert agent.stats == before
        assert agent.counters.rejected_observations == 1
        agent.step(_obs(2), 1.0)  # the pending (state, action) still gets the next reward
        assert agent.stats.n_sas[1, :, 2].sum() == 1


def test_clipped_observation_values_are_counted():
    with OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2) as agent:
        agent.step([5.0], None)
        agent.step([-1.0], 0.0)
        assert agent.counters.clipped_values == 2


def test_statistics_are_saved_at_close_and_reloaded_at_start(tmp_path):
    path = tmp_path / "stats.npz"
    agent = OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2,
                        persistence=StatsPersistence(path, every_s=None))
    _train_bandit(agent, steps=100)
    live = agent.stats.copy()
    agent.close()
    assert CountStats.load(path) == live

    again = OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2,
                        persistence=StatsPersistence(path, every_s=None))
    assert again.stats == live
    again.close(save=False)


def test_periodic_saves_happen_in_the_background(tmp_path):
    path = tmp_path / "stats.npz"
    persistence = StatsPersistence(path, every_s=None, every_steps=20)
    with OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2,
                     persistence=persistence) as agent:
        _train_bandit(agent, steps=100)
        deadline = time.monotonic() + 5
        while agent.counters.saves < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert agent.counters.saves >= 1
        assert CountStats.load(path).n_transitions >= 20


def test_corrupted_statistics_fall_back_to_the_previous_copy(tmp_path, caplog):
    path = tmp_path / "stats.npz"
    good = CountStats(4, 2)
    good.update(0, 1, 1.0, 2)
    good.save(path)
    newer = good.copy()
    newer.update(1, 0, 0.0, 3)
    newer.save(path)  # good is now stats.npz.prev
    path.write_bytes(path.read_bytes()[:700])  # torn write

    with caplog.at_level(logging.WARNING):
        persistence = StatsPersistence(path, every_s=None)
        agent = OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2,
                            persistence=persistence)
    assert agent.stats == good
    assert persistence.loaded_from.name == "stats.npz.prev"
    assert "last good copy" in caplog.text
    assert (tmp_path / "stats.npz.corrupt").exists()
    agent.close()
    assert CountStats.load(path) == good and CountStats.load(str(path) + ".prev") == good


def test_statistics_of_another_shape_are_refused_with_the_file_named(tmp_path):
    path = tmp_path / "stats.npz"
    CountStats(5, 2).save(path)
    with pytest.raises(ValueError, match="stats.npz: statistics have S=5"):
        OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2,
                    persistence=StatsPersistence(path))


def test_disk_full_is_counted_and_the_old_file_survives(tmp_path, monkeypatch):
    path = tmp_path / "stats.npz"
    persistence = StatsPersistence(path, every_s=None)
    agent = OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2,
                        persistence=persistence)
    _train_bandit(agent, steps=50)
    assert agent.save_statistics()
    saved = CountStats.load(path)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    _train_bandit(agent, steps=50, seed=3)
    assert not agent.save_statistics()
    agent.step(_obs(0), 1.0)  # the loop carries on
    agent.close()  # the final save fails too
    monkeypatch.undo()
    c = agent.counters
    assert c.save_failures == 2 and c.saves == 1
    assert CountStats.load(path) == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.npz"]


def test_saving_to_a_path_the_disk_refuses_returns_false(tmp_path, monkeypatch, caplog):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2) as agent:
        _train_bandit(agent, steps=20)
        monkeypatch.setattr(os, "fsync", full)
        with caplog.at_level(logging.ERROR, logger="rlfm_edge.runtime.online_agent"):
            assert not agent.save_statistics(tmp_path / "stats.npz")
        assert "stats.npz ([Errno 28] No space left on device)" in caplog.text
        monkeypatch.undo()
        assert agent.save_statistics(tmp_path / "stats.npz")
        assert CountStats.load(tmp_path / "stats.npz") == agent.stats


def test_reset_statistics_forgets_experience_in_the_snapshot_too():
    with OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2) as agent:
        _train_bandit(agent, steps=50)
        agent.reset_statistics()
        agent.step(_obs(0), None)
        agent.step(_obs(1), 1.0)
        assert agent.wait_refreshed(agent.request_refresh(), timeout=10)
        assert agent.stats.n_transitions == 1
        assert agent._stats == agent.stats


def test_transition_log_replays_to_the_live_statistics(tmp_path):
    disc = _disc()
    log = TransitionLogger(tmp_path / "run.mcap", disc.n_states, 2, horizon=5)
    agent = OnlineAgent(disc, PlanningEngine(), horizon=5, n_actions=2, transition_log=log)
    _train_bandit(agent, steps=120)
    agent.close()
    assert read_statistics(tmp_path / "run.mcap") == agent.stats


class SlowToCopy(list):
    """An observation whose float32 copy for the log takes ``delay`` seconds (the step's
    discretizer reads it as a list)."""

    delay = 0.05

    def __array__(self, dtype=None, copy=None):
        time.sleep(self.delay)
        return np.asarray(list(self), dtype)


def test_step_latency_includes_the_copy_made_for_the_log(tmp_path):
    disc = _disc()
    log = TransitionLogger(tmp_path / "run.mcap", disc.n_states, 2, horizon=5)
    agent = OnlineAgent(disc, PlanningEngine(), horizon=5, n_actions=2, transition_log=log,
                        deadline_s=0.01)
    agent.step(SlowToCopy(_obs(1)), None)
    c = agent.counters
    agent.close()
    assert c.step_overruns == 1 and c.last_step_latency_s >= SlowToCopy.delay
    (record,) = read_steps(tmp_path / "run.mcap")
    assert record.latency_ns >= SlowToCopy.delay * 1e9


def test_configuration_errors_name_the_argument():
    with pytest.raises(ValueError, match="mode"):
        OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2, mode="best")
    with pytest.raises(ValueError, match="safe_action"):
        OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2, safe_action=2)
    with pytest.raises(ValueError, match="horizon"):
        OnlineAgent(_disc(), PlanningEngine(), horizon=0, n_actions=2)
    with pytest.raises(ModelLimitError, match="model serves at most 2"):
        OnlineAgent(_disc(), PlanningEngine(max_states=2), horizon=5, n_actions=2)
    with pytest.raises(ModelLimitError):
        OnlineAgent(_disc(), PlanningEngine(max_actions=2), horizon=5, n_actions=3)
    with pytest.raises(ValueError, match="refresh_niceness"):
        OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2, refresh_niceness=-5)


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no per-thread niceness on this OS")
@pytest.mark.parametrize("niceness", [0, 10])
def test_the_refresh_thread_alone_runs_at_a_lower_priority_than_the_control_loop(niceness):
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2,
                     refresh_niceness=niceness) as agent:
        assert agent.wait_refreshed(timeout=5.0)  # the refresher has started and run once
        refresher = os.getpriority(os.PRIO_PROCESS, agent._refresher.native_id)
        bookkeeper = os.getpriority(os.PRIO_PROCESS, agent._bookkeeper.native_id)
    assert refresher == min(19, own + niceness)
    assert bookkeeper == own and os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own


def test_terminated_episode_enters_an_absorbing_terminal_state(tmp_path):
    disc = _disc()
    log = TransitionLogger(tmp_path / "run.mcap", disc.n_states + 1, 2, horizon=5)
    agent = OnlineAgent(disc, PlanningEngine(), horizon=5, n_actions=2, terminal_state=True,
                        transition_log=log)
    assert agent.n_states == 5 and agent.terminal_index == 4
    agent.step(_obs(0), None)
    a = agent.step(_obs(3), 1.0)
    agent.terminate(0.5, observation=[2.0])
    stats = agent.stats
    assert stats.n_sas[3, a, 4] == 1 and stats.R_hat()[3, a] == 0.5
    assert stats.n_sas[4, :, 4].tolist() == [1, 1] and stats.R_hat()[4].tolist() == [0.0, 0.0]
    assert agent.counters.episodes == 1 and agent.counters.transitions == 2
    agent.step(_obs(1), 7.0)  # a new episode: its first reward is ignored
    assert agent.stats.n_transitions == 4
    agent.close()
    assert read_statistics(tmp_path / "run.mcap") == agent.stats


def test_planner_learns_to_avoid_the_terminal_state():
    """Action 0 ends the episode by failure; action 1 carries on. Rewards are 1 either way."""
    with OnlineAgent(_disc(), PlanningEngine(bonus_scale=0.05), horizon=10, n_actions=2,
                     mode="greedy", terminal_state=True, refresh_every=5) as agent:
        rng = np.random.default_rng(0)
        agent.end_episode()
        for _ in range(60):
            a = agent.step(_obs(int(rng.integers(4))), None)
            for _ in range(10):
                if a == 0:
                    agent.terminate(1.0)
                    break
                a = agent.step(_obs(int(rng.integers(4))), 1.0)
            else:
                agent.end_episode()
        assert agent.wait_refreshed(agent.request_refresh(), timeout=10)
        assert _greedy_actions(agent) == [1, 1, 1, 1]


def test_terminate_needs_a_terminal_state_and_a_finite_reward():
    with OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2) as agent, \
            pytest.raises(ValueError, match="terminal_state="):
        agent.terminate(1.0)
    with OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2,
                     terminal_state=True) as agent:
        agent.step(_obs(0), None)
        with pytest.raises(InvalidObservation):
            agent.terminate(np.nan)
        bad = [np.nan] * len(_obs(0))  # a terminal frame with a NaN observation is refused too
        with pytest.raises(InvalidObservation, match="non-finite"):
            agent.terminate(1.0, bad)
        assert agent.counters.episodes == 0 and agent.counters.rejected_observations == 2
    with pytest.raises(ModelLimitError):
        OnlineAgent(_disc(), PlanningEngine(max_states=4), horizon=5, n_actions=2,
                    terminal_state=True)


def test_annealing_makes_sampling_greedy_where_states_are_well_visited():
    def best_action_share(anneal_visits):
        with OnlineAgent(_disc(), PlanningEngine(bonus_scale=0.05), horizon=5, n_actions=2,
                         temperature=1.0, anneal_visits=anneal_visits, seed=1) as agent:
            _train_bandit(agent)  # about 70 visits per state; Q gap 1 between the actions
            assert agent.wait_refreshed(agent.request_refresh(), timeout=10)
            picks = []
            for i in range(200):
                agent.end_episode()
                picks.append(agent.step(_obs(i % 4)))
            return np.mean(np.equal(picks, 1))

    assert best_action_share(None) < 0.9  # softmax(Q / 1): about 0.73
    assert best_action_share(1.0) > 0.99  # T = 1 / sqrt(1 + ~70)


@pytest.mark.parametrize("value", [0.0, -2.0, float("nan"), float("inf")])
def test_bad_anneal_visits_is_rejected(value):
    with pytest.raises(ValueError, match="anneal_visits"):
        OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2, anneal_visits=value)


def _fast_robot(agent, steps, seed=0):
    """Steps back to back, far faster than a refresh: a robot at a high rate, or a simulator."""
    rng = np.random.default_rng(seed)
    actions, reward = [], None
    for t in range(steps):
        a = agent.step(_obs(int(rng.integers(4))), reward)
        actions.append(a)
        reward = float(a == 1)
        if t % 50 == 49:
            agent.end_episode()
            reward = None
    return actions


def test_a_robot_faster_than_a_refresh_still_gets_one_every_refresh_every_steps():
    with OnlineAgent(_disc(), SlowEngine(0.01), horizon=5, n_actions=2, refresh_every=10,
                     refresh_on_new_pair=False, refresh_on_episode_end=False) as agent:
        _fast_robot(agent, 300)
        c = agent.counters
    assert c.transitions >= 290 and c.refreshes >= c.transitions // 10 - 2 and c.policy_waits > 0


def test_without_a_lag_bound_a_fast_robot_outruns_the_refreshes():
    with OnlineAgent(_disc(), SlowEngine(0.05), horizon=5, n_actions=2, refresh_every=10,
                     max_policy_lag=None, refresh_on_new_pair=False,
                     refresh_on_episode_end=False) as agent:
        _fast_robot(agent, 300)
        c = agent.counters
    assert c.policy_waits == 0 and c.refreshes < c.transitions // 10 - 2


def test_lag_zero_acts_on_a_policy_of_every_transition_and_is_deterministic():
    runs = []
    for _ in range(2):
        with OnlineAgent(_disc(), SlowEngine(0.002), horizon=5, n_actions=2, refresh_every=1,
                         max_policy_lag=0, seed=3) as agent:
            actions = _fast_robot(agent, 200)
            assert agent.counters.policy_stats_version == agent.stats.version
            runs.append((actions, agent.stats.n_sas.copy(), agent.counters.refreshes))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])
    assert runs[0][2] == runs[1][2] >= 190


def test_max_policy_lag_is_checked():
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="max_policy_lag"):
            OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2, max_policy_lag=bad)


def test_a_goal_is_an_absorbing_state_worth_the_top_reward_and_a_failure_worth_nothing():
    with OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2,
                     terminal_state="both") as agent:
        assert agent.n_states == 6 and agent.terminal_indices == {"failure": 4, "goal": 5}
        agent.step(_obs(1), None)
        agent.terminate(0.5, kind="goal")
        agent.step(_obs(2), None)
        agent.terminate(0.0)  # the first kind: failure
        with pytest.raises(ValueError, match="kind 'fall'"):
            agent.terminate(0.0, kind="fall")
        stats = agent.stats
    R = stats.R_hat()
    assert np.all(R[5] == 1.0) and np.all(R[4] == 0.0)
    assert stats.n_sas[:4, :, 5].sum() == 1 and stats.n_sas[:4, :, 4].sum() == 1
    assert np.all(stats.n_sas[5, :, 5] == 1) and np.all(stats.n_sas[4, :, 4] == 1)


def test_terminal_state_setting_is_checked():
    with pytest.raises(ValueError, match="terminal_state"):
        OnlineAgent(_disc(), PlanningEngine(), horizon=5, n_actions=2, terminal_state="fall")
