"""The evaluation harness: run_online / run_offline, metrics, runner, datasets and reports."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from rlfm_edge.bench import metrics, run_offline, run_online
from rlfm_edge.bench.datasets import generate_dataset, parse_behaviour
from rlfm_edge.bench.online import derive_seeds, run_episodes
from rlfm_edge.bench.report import (
    offline_table,
    online_table,
    print_and_record,
    question_of,
    record_section,
    regret_ratios,
    summarize_online,
    write_report,
)
from rlfm_edge.bench.runner import run_offline_experiment, run_online_experiment
from rlfm_edge.mdp import TabularMDP
from rlfm_edge.planning import optimal_value, policy_value, value_iteration


def two_state_mdp(reward_dist: str = "deterministic") -> TabularMDP:
    """Action 1 moves to state 1, whose action 1 pays 0.8; everything else pays 0.1 or 0."""
    P = np.zeros((2, 2, 2))
    P[:, 0, 0] = 1.0
    P[:, 1, 1] = 1.0
    R = np.array([[0.1, 0.0], [0.0, 0.8]])
    return TabularMDP(P, R, np.array([1.0, 0.0]), horizon=4, name="two",
                      reward_dist=reward_dist)


def stochastic_mdp() -> TabularMDP:
    rng = np.random.default_rng(3)
    P = rng.dirichlet(np.ones(4), size=(4, 3))
    return TabularMDP(P, rng.random((4, 3)), np.full(4, 0.25), horizon=5, name="rand")


class OptimalAgent:
    """Plays argmax Q* of the true MDP: its regret is zero in expectation."""

    def __init__(self, mdp: TabularMDP) -> None:
        self.greedy = value_iteration(mdp)[0].argmax(axis=2)

    def act(self, s: int, h: int) -> int:
        return int(self.greedy[h, s])

    def observe(self, s, a, r, s_next) -> None:
        pass

    def end_episode(self) -> None:
        pass


# -- run_online ---------------------------------------------------------------------------

def test_run_online_returns_one_return_per_episode_within_reward_bounds():
    mdp = stochastic_mdp()
    returns = run_online(mdp, "random", 7, seed=1)
    assert returns.shape == (7,)
    assert np.all((returns >= 0) & (returns <= mdp.horizon))
    assert np.all(returns == np.round(returns))  # Bernoulli rewards sum to integers


def test_run_online_tells_the_paper_agents_the_episode_count(monkeypatch):
    import rlfm_edge.agents as agents

    told, make = {}, agents.make_agent

    def spy(name, *args, **kw):
        told[name] = kw.get("n_episodes")
        return make(name, *args, **kw)

    monkeypatch.setattr(agents, "make_agent", spy)
    for name in ("ucbvi_paper", "qlearning_paper", "ucbvi"):
        run_online(stochastic_mdp(), name, 3)
    run_online(stochastic_mdp(), "qlearning", 3, bonus_scale=0.01)
    assert told == {"ucbvi_paper": 3, "qlearning_paper": 3, "ucbvi": None, "qlearning": None}
    run_online(stochastic_mdp(), "ucbvi_paper", 3, n_episodes=50)  # an explicit count wins
    assert told["ucbvi_paper"] == 50


def test_run_online_is_deterministic_given_the_seed():
    mdp = stochastic_mdp()
    a = run_online(mdp, "qlearning", 30, seed=5)
    assert np.array_equal(a, run_online(mdp, "qlearning", 30, seed=5))
    assert not np.array_equal(a, run_online(mdp, "qlearning", 30, seed=6))


def test_run_online_passes_agent_keyword_arguments():
    mdp = stochastic_mdp()
    with pytest.raises(ValueError, match="bonus_scale"):
        run_online(mdp, "ucbvi", 2, seed=0, bonus_scale=-1.0)


def test_seeds_give_independent_env_and_agent_streams():
    rng_a, agent_a = derive_seeds(0)
    rng_b, agent_b = derive_seeds(0)
    assert agent_a == agent_b and rng_a.random() == rng_b.random()
    assert derive_seeds(1)[1] != agent_a


def test_optimal_agent_has_zero_regret_on_a_deterministic_mdp():
    mdp = two_state_mdp()
    returns = run_episodes(mdp, OptimalAgent(mdp), 20, np.random.default_rng(0))
    v_star = optimal_value(mdp)
    assert v_star == pytest.approx(0.8 * 3)
    assert np.allclose(metrics.cumulative_regret(returns, v_star), 0.0)
    assert metrics.episodes_to_threshold(returns, v_star) == metrics.THRESHOLD_WINDOW


def test_random_agent_accumulates_regret_on_a_deterministic_mdp():
    mdp = two_state_mdp()
    regret = metrics.cumulative_regret(run_online(mdp, "random", 50, seed=0),
                                       optimal_value(mdp))
    assert regret[-1] > 0.5 * 50
    assert np.all(np.diff(regret) >= -1e-12)  # no episode beats V* on this MDP


def test_run_episodes_rejects_an_agent_that_returns_an_invalid_action():
    class Bad(OptimalAgent):
        def act(self, s, h):
            return 7

    mdp = two_state_mdp()
    with pytest.raises(RuntimeError, match="action 7"):
        run_episodes(mdp, Bad(mdp), 1, np.random.default_rng(0))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"agent_name": "nope"}, "agent: unknown agent 'nope'"),
    ({"episodes": 0}, "episodes: expected an integer >= 1"),
    ({"episodes": 2.5}, "episodes: expected an integer"),
    ({"episodes": True}, "episodes: expected an integer"),
    ({"seed": -1}, "seed: expected an integer >= 0"),
    ({"mdp": "riverswim"}, "mdp: expected a TabularMDP"),
])
def test_run_online_rejects_bad_input_naming_the_option(kwargs, match):
    args = {"mdp": two_state_mdp(), "agent_name": "random", "episodes": 3, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        run_online(**args)


# -- metrics ------------------------------------------------------------------------------

def test_moving_average_uses_the_available_prefix():
    assert np.allclose(metrics.moving_average([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])


def test_episodes_to_threshold_is_the_first_full_window_reaching_it():
    returns = [0.0] * 5 + [1.0] * 10
    assert metrics.episodes_to_threshold(returns, 1.0, fraction=0.9, window=4) == 9
    assert metrics.episodes_to_threshold(returns, 1.0, fraction=0.5, window=4) == 7
    assert metrics.episodes_to_threshold([0.0] * 5, 1.0) is None
    assert metrics.episodes_to_threshold([1.0] * 3, 1.0, window=10) == 3  # K < window


def test_final_return_averages_the_last_tenth():
    assert metrics.final_return(np.r_[np.zeros(90), np.ones(10)]) == 1.0
    assert metrics.final_return([5.0]) == 5.0


def test_mean_ci_is_the_student_t_interval():
    mean, half = metrics.mean_ci([1.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(12.7062 * 1.0, rel=1e-4)
    assert np.isnan(metrics.mean_ci([4.0])[1])


# -- runner -------------------------------------------------------------------------------

def test_parallel_runner_matches_serial():
    kw = {"envs": ["riverswim"], "agents": ["random", "qlearning"], "episodes": 6,
          "n_seeds": 3, "progress": False}
    serial = run_online_experiment(workers=1, **kw)
    parallel = run_online_experiment(workers=2, **kw)
    for agent in kw["agents"]:
        a = serial["envs"]["riverswim"]["returns"][agent]
        assert a.shape == (3, 6)
        assert np.array_equal(a, parallel["envs"]["riverswim"]["returns"][agent])
    # a run seed of the runner is a run_online seed
    mdp = __import__("rlfm_edge.envs", fromlist=["make"]).make("riverswim")
    assert np.array_equal(serial["envs"]["riverswim"]["returns"]["qlearning"][2],
                          run_online(mdp, "qlearning", 6, seed=2))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"envs": ["atlantis"]}, "envs: unknown environment 'atlantis'"),
    ({"envs": []}, "envs: expected at least one"),
    ({"agents": ["random", "random"]}, "agents: has duplicates"),
    ({"agents": ["nope"]}, "agent: unknown agent 'nope'"),
    ({"n_seeds": 0}, "seeds: expected an integer >= 1"),
    ({"episodes": -3}, "episodes: expected an integer >= 1"),
    ({"workers": 0}, "workers: expected an integer >= 1"),
    ({"agent_kw": {"psrl": {}}}, "agent_kw: 'psrl' is not among"),
])
def test_online_runner_rejects_bad_options(kwargs, match):
    args = {"envs": ["riverswim"], "agents": ["random"], "episodes": 2, "n_seeds": 1,
            "progress": False} | kwargs
    with pytest.raises(ValueError, match=match):
        run_online_experiment(**args)


# -- datasets and run_offline -------------------------------------------------------------

def test_datasets_have_the_requested_size_and_are_nested_across_sizes():
    mdp = stochastic_mdp()
    small = generate_dataset(mdp, "uniform", 7, seed=4)
    large = generate_dataset(mdp, "uniform", 23, seed=4)
    assert len(small) == 7 and len(large) == 23
    assert large[:7] == small
    assert generate_dataset(mdp, "uniform", 23, seed=5) != large


def test_episodes_in_a_dataset_start_from_mu0():
    mdp = two_state_mdp()
    data = generate_dataset(mdp, "uniform", 40, seed=0)
    assert all(data[i][0] == 0 for i in range(0, 40, mdp.horizon))


def test_optimal_behaviour_plays_the_greedy_action():
    mdp = two_state_mdp()
    data = generate_dataset(mdp, "optimal", 8, seed=0)
    assert [a for _, a, _, _ in data] == [1] * 8


def test_behaviour_values_order_uniform_eps_optimal_and_mixtures():
    mdp = stochastic_mdp()
    v_star = optimal_value(mdp)
    v_unif = parse_behaviour("uniform").value(mdp)
    v_eps = parse_behaviour("eps_optimal").value(mdp)
    assert v_unif < v_eps < v_star
    assert parse_behaviour("mixture:1").value(mdp) == pytest.approx(v_star)
    assert parse_behaviour("mixture:0.25").value(mdp) == pytest.approx(
        0.25 * v_star + 0.75 * v_unif)
    assert parse_behaviour("eps_optimal").param == 0.1


@pytest.mark.parametrize(("spec", "match"), [
    ("expert", "behaviour: unknown 'expert'"),
    ("uniform:0.3", "takes no parameter"),
    ("eps_optimal:x", "must be a number"),
    ("mixture:1.5", r"must lie in \[0, 1\]"),
])
def test_bad_behaviours_are_rejected(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_behaviour(spec)


def test_run_offline_returns_the_exact_value_of_the_extracted_policy():
    from rlfm_edge.offline import extract_policy
    from rlfm_edge.stats import CountStats

    mdp = stochastic_mdp()
    data = generate_dataset(mdp, "uniform", 60, seed=1)
    stats = CountStats.from_transitions(mdp.n_states, mdp.n_actions, data)
    for method in ("vi", "vi_lcb"):
        pi = extract_policy(stats, mdp.n_states, mdp.n_actions, mdp.horizon, method)
        assert run_offline(mdp, data, method) == pytest.approx(policy_value(mdp, pi), abs=1e-12)


def test_vi_on_a_huge_dataset_reaches_the_optimal_value():
    mdp = stochastic_mdp()
    data = generate_dataset(mdp, "uniform", 40_000, seed=2)
    assert run_offline(mdp, data, "vi") == pytest.approx(optimal_value(mdp), abs=1e-9)


@pytest.mark.parametrize(("dataset", "match"), [
    ([], "dataset: is empty"),
    ([(0, 0, 1.0)], r"\(s, a, r, s_next\) tuple"),
    ([(0, 0, 1.0, 0), (2, 0, 0.0, 0)], r"dataset\[1\]: s=2 is not an integer in \[0, 2\)"),
    ([(0, 5, 1.0, 0)], r"dataset\[0\]: a=5"),
    ([(0, 0, 1.0, -1)], r"dataset\[0\]: s_next=-1"),
    ([(0.5, 0, 1.0, 0)], r"dataset\[0\]: s=0.5"),
    ([(0, 0, float("nan"), 0)], r"dataset\[0\]: reward must be finite"),
    (None, "dataset: expected a list"),
])
def test_run_offline_rejects_malformed_datasets(dataset, match):
    with pytest.raises(ValueError, match=match):
        run_offline(two_state_mdp(), dataset, "vi")


def test_run_offline_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="method: unknown 'nope'"):
        run_offline(two_state_mdp(), [(0, 1, 0.0, 1)], "nope")


def test_run_offline_passes_method_keyword_arguments():
    mdp = stochastic_mdp()
    data = generate_dataset(mdp, "uniform", 30, seed=0)
    with pytest.raises(ValueError, match="bonus_scale"):
        run_offline(mdp, data, "vi_lcb", bonus_scale=-1)


# -- reports ------------------------------------------------------------------------------

def test_online_report_writes_json_markdown_and_a_png(tmp_path):
    results = run_online_experiment(["riverswim", "chain"], ["random", "psrl"], 12, 2,
                                    workers=1, progress=False)
    table, paths = write_report(results, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["learning_curves.png", "results.json", "results.md"]
    png = (tmp_path / "out" / "learning_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(data["envs"]["chain"]["returns"]["psrl"]) == 2
    assert {row["agent"] for row in data["summary"]} == {"random", "psrl"}
    assert "| riverswim | psrl |" in table
    assert (tmp_path / "out" / "results.md").read_text() == table


def test_offline_experiment_and_report(tmp_path):
    results = run_offline_experiment(["chain"], ["vi", "vi_lcb"], [1, 4], ["uniform", "mixture"],
                                     2, workers=1, progress=False)
    values = results["envs"]["chain"]["values"]
    assert set(values) == {"uniform", "mixture:0.5"}
    assert values["uniform"][4]["vi_lcb"].shape == (2,)
    v_star = results["envs"]["chain"]["v_star"]
    assert all(v <= v_star + 1e-9 for b in values.values() for n in b.values()
               for m in n.values() for v in m)
    table, _ = write_report(results, tmp_path)
    assert "| chain | mixture:0.5 | 4 |" in table
    assert (tmp_path / "offline_values.png").read_bytes().startswith(b"\x89PNG")


def test_record_section_adds_and_replaces_sections_by_title(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    record_section(path, "Online A", "rlfm-edge bench online --x 1", "table one")
    record_section(path, "Stats", "rlfm-edge bench stats", "table two")
    record_section(path, "Online A", "rlfm-edge bench online --x 2", "table three")
    text = path.read_text()
    assert text.count("## Online A") == 1 and text.count("## Stats") == 1
    assert "table one" not in text and "--x 1" not in text
    assert "table three" in text and "rlfm-edge bench online --x 2" in text
    assert text.index("## Online A") < text.index("## Stats")  # replaced in place
    assert "table two" in text
    with pytest.raises(ValueError, match="title"):
        record_section(path, "  ", "cmd", "body")


def test_a_benchmark_script_records_its_own_command_line(tmp_path, capsys):
    path = tmp_path / "BENCHMARKS.md"
    print_and_record("| a | b |", None, "Script", "/x/benchmarks/probe.py", ["--n", "3"])
    assert capsys.readouterr().out == "| a | b |\n" and not path.exists()
    print_and_record("| a | b |", path, "Script", "/x/benchmarks/probe.py",
                     ["--n", "3", "--tag", "two words"])
    text = path.read_text()
    assert "python benchmarks/probe.py --n 3 --tag 'two words'" in text and "| a | b |" in text


def _intra_op_threads() -> tuple[str, int, int]:
    import torch

    from rlfm_edge.inference.base import refresh_threads

    return os.environ.get("OMP_NUM_THREADS", ""), torch.get_num_threads(), refresh_threads()


def test_parallel_workers_run_torch_on_one_thread_each():
    pytest.importorskip("torch")
    from rlfm_edge.bench.runner import run_jobs

    assert run_jobs(_intra_op_threads, [(), ()], workers=2, progress=False, desc="") == [("1", 1, 1)] * 2


def _online_results(returns: dict[str, dict[str, float]]) -> dict:
    """Results of 2 seeds x 10 episodes with V* = 1 and a constant return per (env, agent)."""
    return {"kind": "online", "config": {"episodes": 10},
            "envs": {env: {"v_star": 1.0, "returns": {a: np.full((2, 10), r) for a, r in by_agent.items()}}
                     for env, by_agent in returns.items()}}


def test_the_online_table_ends_with_the_median_regret_ratio_per_reference_agent():
    # regrets (10 episodes x (1 - return)): rlfm 1, 2, 6; ucbvi 2, 2, 2 -> ratios 0.5, 1, 3.
    results = _online_results({"a": {"rlfm": 0.9, "ucbvi": 0.8}, "b": {"rlfm": 0.8, "ucbvi": 0.8},
                               "c": {"rlfm": 0.4, "ucbvi": 0.8}})
    table = online_table(results)
    assert table.endswith("| agent | median regret / ucbvi's |\n|---|---|\n| rlfm | 1.00 |\n")
    assert regret_ratios(summarize_online(_online_results({"a": {"rlfm": 0.9, "random": 0.1}}))) == ""


def test_the_offline_table_counts_the_cells_within_the_target_margin_of_vi_lcb():
    results = {"kind": "offline", "config": {"methods": ["rlfm", "vi_lcb"]},
               "envs": {"e": {"v_star": 2.0, "behaviour_values": {"uniform": 0.5},
                              "values": {"uniform": {  # normalised: rlfm - vi_lcb = -0.01, -0.05, +0.2
                                  1: {"rlfm": np.array([1.18, 1.18]), "vi_lcb": np.array([1.2, 1.2])},
                                  2: {"rlfm": np.array([1.0, 1.2]), "vi_lcb": np.array([1.2, 1.2])},
                                  3: {"rlfm": np.array([1.6, 1.6]), "vi_lcb": np.array([1.2, 1.2])}}}}}}
    assert offline_table(results).endswith("| rlfm | vi_lcb | 2 / 3 | 67% |\n")


def test_the_offline_table_counts_cells_against_each_vi_lcb_that_ran():
    values = {1: {"rlfm": np.array([1.0]), "vi_lcb": np.array([1.2]), "vi_lcb_paper": np.array([0.4])}}
    results = {"kind": "offline", "config": {"methods": ["rlfm", "vi_lcb", "vi_lcb_paper"]},
               "envs": {"e": {"v_star": 2.0, "behaviour_values": {"uniform": 0.5},
                              "values": {"uniform": values}}}}
    table = offline_table(results)
    assert "| rlfm | vi_lcb | 0 / 1 | 0% |" in table
    assert "| rlfm | vi_lcb_paper | 1 / 1 | 100% |" in table
    assert "| vi_lcb | vi_lcb_paper | 1 / 1 | 100% |" in table


def test_record_section_replaces_a_section_filed_under_a_question_in_place(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Learning online\n\nWhat it asks.\n\n### Online A\n\n"
                    "```\nold command\n# a shell comment, not a heading\n```\n\nold table\n\n"
                    "### Online B\n\ntable B\n\n## Reliability\n\n### Soak\n\nsoak table\n")
    record_section(path, "Online A", "rlfm-edge bench online --x 2", "new table")
    record_section(path, "Soak", "python benchmarks/soak.py", "new soak table")
    text = path.read_text()
    assert "old table" not in text and "old command" not in text and "shell comment" not in text
    assert text.count("### Online A") == 1 and "## Online A" not in text.replace("### Online A", "")
    assert text.index("## Learning online") < text.index("### Online A") < text.index("new table") \
        < text.index("### Online B") < text.index("## Reliability") < text.index("new soak table")
    assert "table B" in text and "What it asks." in text and text.rstrip().endswith("new soak table")


def test_a_new_section_is_filed_at_the_end_of_the_question_its_command_answers(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Learning online\n\n### Online A\n\ntable A\n\n"
                    "## Inference latency and INT8\n\n### Old latency\n\nold rows\n\n## Reliability\n\n"
                    "### Soak\n\nsoak table\n")
    record_section(path, "New latency", "rlfm-edge bench latency --states 64", "latency rows")
    record_section(path, "Held-out split", "python benchmarks/heldout_prior.py --mdps 8", "regret rows")
    record_section(path, "Something else", "python benchmarks/unknown.py", "other rows")
    text = path.read_text()
    assert text.index("## Inference latency and INT8") < text.index("old rows") \
        < text.index("### New latency") < text.index("latency rows") < text.index("## Reliability")
    assert text.index("table A") < text.index("### Held-out split") \
        < text.index("## Inference latency and INT8")
    assert text.rstrip().endswith("other rows") and "\n## Something else\n" in text
    assert question_of("rlfm-edge bench robot --seeds 2") == "Robot tasks"
    assert question_of("python benchmarks/kill9_loss.py --kills 3") == "Reliability"
    assert question_of("rlfm-edge bench robot-configs") is None
