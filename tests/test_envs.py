"""Benchmark MDPs: the documented dynamics, hand-computable values, agreement with the
gymnasium sources, rescalings that keep optimal policies, and the gymnasium wrapper."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlfm_edge import envs
from rlfm_edge.envs.toy_text import CLIFFWALKING_ID, FROZENLAKE_4X4_ID, raw_model
from rlfm_edge.gym_env import TabularEnv, gym_id, make_env
from rlfm_edge.mdp import TabularMDP
from rlfm_edge.planning import backward_induction, optimal_value, policy_value, value_iteration


@pytest.mark.parametrize("name", envs.names())
def test_every_benchmark_builds_a_valid_named_mdp(name):
    mdp = envs.make(name)
    assert isinstance(mdp, TabularMDP) and mdp.name == name
    TabularMDP(mdp.P, mdp.R, mdp.mu0, mdp.horizon)  # re-validates
    assert 0 < optimal_value(mdp) <= mdp.horizon


@pytest.mark.parametrize("name", envs.names())
def test_horizon_keyword_is_honoured(name):
    assert envs.make(name, horizon=7).horizon == 7


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown env 'riverswam'.*riverswim.*cliffwalking"):
        envs.make("riverswam")


@pytest.mark.parametrize(
    ("name", "kw", "field"),
    [("riverswim", {"n_states": 1}, "n_states"),
     ("riverswim", {"n_states": 2.5}, "n_states"),
     ("riverswim", {"horizon": 0}, "horizon"),
     ("sixarms", {"horizon": True}, "horizon"),
     ("chain", {"slip": 1.5}, "slip"),
     ("chain", {"n": 1}, "n"),
     ("deepsea", {"size": 1}, "size"),
     ("deepsea", {"seed": -1}, "seed"),
     ("garnet", {"branching": 11}, "branching"),
     ("garnet", {"n_actions": 0}, "n_actions"),
     ("garnet", {"reward_fraction": -0.1}, "reward_fraction"),
     ("frozenlake8x8", {"horizon": -5}, "horizon"),
     ("cliffwalking", {"horizon": "50"}, "horizon")],
)
def test_bad_parameter_values_are_rejected_by_name(name, kw, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        envs.make(name, **kw)


def test_unknown_keyword_lists_the_accepted_ones():
    expected = "riverswim: unknown argument.*n_state.*accepted: n_states"
    with pytest.raises(ValueError, match=expected):
        envs.make("riverswim", n_state=6)


# -- the classic MDPs ------------------------------------------------------------------------
def test_riverswim_has_the_osband_2013_dynamics():
    mdp = envs.make("riverswim")
    assert (mdp.n_states, mdp.n_actions, mdp.horizon) == (6, 2, 20)
    np.testing.assert_array_equal(mdp.mu0, np.eye(6)[0])
    right = mdp.P[:, 1]
    np.testing.assert_allclose(right[0, :2], [0.4, 0.6])
    np.testing.assert_allclose(right[3, 2:5], [0.05, 0.6, 0.35])
    np.testing.assert_allclose(right[5, 4:], [0.4, 0.6])
    np.testing.assert_array_equal(mdp.P[:, 0].argmax(axis=1), [0, 0, 1, 2, 3, 4])
    expected_R = np.zeros((6, 2))
    expected_R[0, 0], expected_R[5, 1] = 0.005, 1.0
    np.testing.assert_array_equal(mdp.R, expected_R)
    always_left = np.zeros(6, dtype=int)
    assert policy_value(mdp, always_left) == pytest.approx(20 * 0.005)
    Q, _ = value_iteration(mdp)
    assert Q[0, 0].argmax() == 1  # swimming upstream is optimal from the start
    assert optimal_value(mdp) > 3 * policy_value(mdp, always_left)


def test_sixarms_value_of_the_risky_arm_has_its_closed_form():
    mdp = envs.make("sixarms")
    H = mdp.horizon
    np.testing.assert_allclose(mdp.P[0, np.arange(6), np.arange(1, 7)],
                               [1, 0.15, 0.10, 0.05, 0.03, 0.01])
    np.testing.assert_allclose(mdp.R.max(axis=1) * 6000, [0, 50, 133, 300, 800, 1660, 6000])
    # hub: pull arm 5 until it succeeds (prob 0.01), then stay in room 6 earning 1 per step
    policy = np.full(7, 5)
    closed_form = sum(1 - 0.99**t for t in range(1, H))
    assert policy_value(mdp, policy) == pytest.approx(closed_form, abs=1e-12)
    assert optimal_value(mdp) == pytest.approx(closed_form, abs=1e-12)


def test_chain_without_slip_has_the_hand_computed_optimum():
    mdp = envs.make("chain", slip=0.0)  # forward 4 steps (reward 0), then 16 x 10 / 10
    assert optimal_value(mdp) == pytest.approx(16.0)
    back = np.ones(5, dtype=int)
    assert policy_value(mdp, back) == pytest.approx(20 * 0.2)


def test_chain_slip_mixes_the_two_actions():
    mdp = envs.make("chain")
    np.testing.assert_allclose(mdp.R[4], [0.8 * 1.0 + 0.2 * 0.2, 0.8 * 0.2 + 0.2 * 1.0])
    np.testing.assert_allclose(mdp.R[0], [0.2 * 0.2, 0.8 * 0.2])
    np.testing.assert_allclose(mdp.P[2, 0, [0, 3]], [0.2, 0.8])


def _bsuite_step(row, col, action, mapping, N):
    """bsuite's deterministic DeepSea step, written out: (raw reward, row, col)."""
    right = action == mapping[row, col]
    reward = 1.0 if (col == N - 1 and right) else 0.0
    if right:
        col = min(col + 1, N - 1)
        reward -= 0.01 / N
    else:
        col = max(col - 1, 0)
    return reward, row + 1, col


@pytest.mark.parametrize(("size", "seed"), [(2, 0), (5, 3), (10, 0), (10, 42), (17, 1)])
def test_deepsea_matches_bsuite_and_its_rescaling_keeps_optimal_policies(size, seed):
    mdp = envs.make("deepsea", size=size, seed=seed)
    mapping = np.random.RandomState(seed).binomial(1, 0.5, (size, size))
    N = size
    for row in range(N):
        for col in range(N):
            for a in range(2):
                r_raw, nrow, ncol = _bsuite_step(row, col, a, mapping, N)
                nxt = N * N if nrow == N else nrow * N + ncol
                assert mdp.P[row * N + col, a, nxt] == 1.0
                assert mdp.R[row * N + col, a] == pytest.approx(r_raw + 0.01 / N)
    assert optimal_value(mdp) == pytest.approx(1.0)
    # the greedy MDP policy collects bsuite's optimal raw return 0.99
    Q, _ = value_iteration(mdp)
    ret, row, col = 0.0, 0, 0
    for h in range(N):
        r, row, col = _bsuite_step(row, col, Q[h, row * N + col].argmax(), mapping, N)
        ret += r
    assert ret == pytest.approx(0.99)


def test_deepsea_seed_changes_the_action_mapping():
    a, b = envs.make("deepsea", seed=0), envs.make("deepsea", seed=1)
    assert not np.array_equal(a.P, b.P)
    np.testing.assert_array_equal(a.P, envs.make("deepsea", seed=0).P)


def test_garnet_has_b_successors_and_sparse_rewards():
    mdp = envs.make("garnet", n_states=12, n_actions=4, branching=3, seed=5)
    assert ((mdp.P > 0).sum(axis=2) == 3).all()
    assert (mdp.R.any(axis=1)).sum() == round(0.2 * 12)
    np.testing.assert_array_equal(mdp.P, envs.make("garnet", n_states=12, n_actions=4,
                                                   branching=3, seed=5).P)
    other = envs.make("garnet", n_states=12, n_actions=4, branching=3, seed=6)
    assert not np.array_equal(mdp.P, other.P)
    assert mdp.reward_dist == "bernoulli"


def test_garnet_probabilities_are_spread_by_uniform_cuts():
    # gaps of b - 1 uniform cuts are Dirichlet(1, ..., 1): each has mean 1 / b
    mdp = envs.make("garnet", n_states=40, n_actions=5, branching=4, seed=0)
    nonzero = mdp.P[mdp.P > 0]
    assert nonzero.mean() == pytest.approx(0.25)
    assert nonzero.std() == pytest.approx(np.sqrt(3 / 80), rel=0.15)  # Beta(1, 3) sd


# -- gymnasium toy_text adapters ------------------------------------------------------------
TOY_TEXT = {"frozenlake4x4": FROZENLAKE_4X4_ID, "frozenlake8x8": "FrozenLake8x8-v1",
            "cliffwalking": CLIFFWALKING_ID}


@pytest.mark.parametrize("name", list(TOY_TEXT))
def test_adapter_agrees_with_the_gymnasium_model(name):
    mdp = envs.make(name)
    source = gym.make(TOY_TEXT[name]).unwrapped
    r_min, scale = mdp.meta["reward_affine"]
    terminal = set()
    for s in range(mdp.n_states):
        for a in range(mdp.n_actions):
            terminal |= {int(n) for _, n, _, done in source.P[s][a] if done}
    for s in range(mdp.n_states):
        for a in range(mdp.n_actions):
            if s in terminal:  # absorbing, earning the image of "no more reward"
                np.testing.assert_array_equal(mdp.P[s, a], np.eye(mdp.n_states)[s])
                assert mdp.R[s, a] == pytest.approx((0 - r_min) / scale)
                continue
            expected = np.zeros(mdp.n_states)
            mean_reward = 0.0
            for prob, nxt, reward, _ in source.P[s][a]:
                expected[nxt] += prob
                mean_reward += prob * reward
            np.testing.assert_allclose(mdp.P[s, a], expected, atol=1e-12)
            assert mdp.R[s, a] == pytest.approx((mean_reward - r_min) / scale)
    np.testing.assert_array_equal(mdp.mu0, source.initial_state_distrib)
    assert mdp.reward_dist == "deterministic"


def test_cliffwalking_optimum_is_the_13_step_path():
    mdp = envs.make("cliffwalking")
    assert (mdp.n_states, mdp.n_actions, mdp.horizon) == (48, 4, 50)
    assert mdp.meta["reward_affine"] == (-100.0, 100.0)
    assert optimal_value(mdp) == pytest.approx(13 * 0.99 + 37 * 1.0)


@pytest.mark.parametrize(("name", "episodes"), [("frozenlake4x4", 3000), ("frozenlake8x8", 1500)])
def test_frozenlake_optimal_value_matches_rollouts_in_gymnasium(name, episodes):
    mdp = envs.make(name)
    Q, _ = value_iteration(mdp)
    env = gym.make(TOY_TEXT[name]).unwrapped
    returns = np.zeros(episodes)
    for i in range(episodes):
        s, _ = env.reset(seed=i)
        for h in range(mdp.horizon):
            s, r, terminated, _, _ = env.step(int(Q[h, s].argmax()))
            returns[i] += r
            if terminated:
                break
    v = optimal_value(mdp)
    assert abs(returns.mean() - v) <= 4 * np.sqrt(v * (1 - v) / episodes)


@pytest.mark.parametrize("env_id", [CLIFFWALKING_ID, FROZENLAKE_4X4_ID])
@pytest.mark.parametrize("horizon", [5, 20, 50])
def test_gym_rescaling_keeps_optimal_actions(env_id, horizon):
    name = {CLIFFWALKING_ID: "cliffwalking", FROZENLAKE_4X4_ID: "frozenlake4x4"}[env_id]
    mdp = envs.make(name, horizon=horizon)
    r_min, scale = mdp.meta["reward_affine"]
    P, R_raw, _, _ = raw_model(env_id)
    Q_raw, _ = backward_induction(P, R_raw, horizon)  # original rewards, not rescaled
    Q, _ = value_iteration(mdp)
    steps_left = np.arange(horizon, 0, -1)[:, None, None]
    np.testing.assert_allclose(Q * scale + r_min * steps_left, Q_raw, atol=1e-9)
    best_raw = np.isclose(Q_raw, Q_raw.max(axis=2, keepdims=True), atol=1e-9)
    best = np.isclose(Q, Q.max(axis=2, keepdims=True), atol=1e-9 / scale)
    np.testing.assert_array_equal(best, best_raw)


# -- gymnasium wrapper ----------------------------------------------------------------------
@pytest.mark.parametrize("name", envs.names())
def test_registered_env_passes_the_gymnasium_checker(name):
    env = gym.make(gym_id(name))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    assert env.observation_space.n == envs.make(name).n_states


def test_wrapper_truncates_at_the_horizon_and_never_terminates():
    env = make_env("chain", horizon=7)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and info == {"step": 0}
    flags = []
    for _ in range(7):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert reward in (0.0, 1.0) and not terminated
        flags.append(truncated)
    assert flags == [False] * 6 + [True]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_wrapper_is_reproducible_under_a_seed():
    env = TabularEnv(envs.make("riverswim"))

    def episode(seed):
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for _ in range(20):
            out += env.step(1)[:2]
        return out

    assert episode(11) == episode(11)
    assert episode(11) != episode(12)


def test_wrapper_rejects_bad_input():
    with pytest.raises(TypeError, match="^mdp:"):
        TabularEnv("riverswim")
    with pytest.raises(ValueError, match="^render_mode:"):
        TabularEnv(envs.make("riverswim"), render_mode="human")
    env = TabularEnv(envs.make("riverswim"))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="^action:"):
        env.step(2)
    with pytest.raises(ValueError, match="^action:"):
        env.step(-1)


def test_gymnasium_make_can_import_the_module_by_itself():
    env = gym.make("rlfm_edge.gym_env:rlfm_edge/deepsea-v0", size=4)
    assert env.unwrapped.mdp.horizon == 4
    env.reset(seed=0)
    steps = 0
    while not env.step(0)[3]:
        steps += 1
    assert steps + 1 == 4
