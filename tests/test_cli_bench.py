"""`rlfm-edge bench ...` and `rlfm-edge info`: outputs, --record, exit codes and messages."""

from __future__ import annotations

import json

import pytest

from rlfm_edge import cli


def run(argv: list[str]) -> int:
    """main(argv), with argparse's own usage errors (SystemExit) turned into the exit code."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def test_bench_online_writes_results_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "res"
    rc = run(["bench", "online", "--envs", "riverswim", "--agents", "random,psrl",
              "--episodes", "5", "--seeds", "2", "--out", str(out), "--workers", "1",
              "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| riverswim | psrl |" in printed and "regret after 5 ep." in printed
    for name in ("results.json", "results.md", "learning_curves.png"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "results.json").read_text())["config"]["episodes"] == 5


def test_bench_online_passes_agent_keyword_arguments(tmp_path, capsys):
    rc = run(["bench", "online", "--envs", "chain", "--agents", "ucbvi", "--episodes", "2",
              "--seeds", "1", "--agent-kw", "ucbvi:bonus_scale=-1", "--out", str(tmp_path),
              "--no-progress", "--workers", "1"])
    assert rc == 2
    assert "bonus_scale" in capsys.readouterr().err


def test_bench_record_replaces_its_section_on_rerun(tmp_path, capsys):
    bench_md = tmp_path / "BENCHMARKS.md"
    argv = ["bench", "online", "--envs", "chain", "--agents", "random", "--episodes", "3",
            "--seeds", "1", "--out", str(tmp_path / "o"), "--workers", "1", "--no-progress",
            "--record", str(bench_md)]
    assert run(argv) == 0
    assert run(argv) == 0
    text = bench_md.read_text()
    assert text.count("## Online: chain (3 episodes, 1 seeds)") == 1
    assert "rlfm-edge bench online --envs chain --agents random --episodes 3" in text
    assert "| chain | random |" in text


def test_bench_offline_writes_results(tmp_path, capsys):
    rc = run(["bench", "offline", "--envs", "chain", "--methods", "vi,vi_lcb", "--sizes", "1,3",
              "--behaviours", "uniform,eps_optimal:0.3", "--seeds", "2", "--out", str(tmp_path),
              "--workers", "1", "--no-progress"])
    assert rc == 0
    assert "| chain | eps_optimal:0.3 | 3 |" in capsys.readouterr().out
    for name in ("results.json", "results.md", "offline_values.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_bench_stats_reports_throughput_and_per_call_overhead(capsys):
    rc = run(["bench", "stats", "--transitions", "2000", "--calls", "200", "--repeats", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "M transitions/s" in out and " us |" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["bench", "online", "--envs", "atlantis"], "envs: unknown environment 'atlantis'"),
    (["bench", "online", "--agents", "random,nope"], "agent: unknown agent 'nope'"),
    (["bench", "online", "--episodes", "0"], "episodes: expected an integer >= 1"),
    (["bench", "online", "--seeds", "0"], "seeds: expected an integer >= 1"),
    (["bench", "online", "--seed", "-2"], "seed: expected an integer >= 0"),
    (["bench", "online", "--workers", "0"], "workers: expected an integer >= 1"),
    (["bench", "online", "--envs", ""], "envs: expected at least one"),
    (["bench", "online", "--agent-kw", "ucbvi"], "--agent-kw: expected AGENT:KEY=VALUE"),
    (["bench", "offline", "--sizes", "10,lots"], "--sizes: expected comma-separated integers"),
    (["bench", "offline", "--sizes", "0"], "sizes: expected an integer >= 1"),
    (["bench", "offline", "--behaviours", "expert"], "behaviour: unknown 'expert'"),
    (["bench", "offline", "--methods", "vi,nope"], "method: unknown 'nope'"),
    (["bench", "stats", "--transitions", "0"], "--transitions: expected an integer >= 1"),
])
def test_bad_bench_options_exit_2_naming_the_option(argv, message, tmp_path, capsys):
    assert run([*argv, "--out", str(tmp_path)] if argv[1] != "stats" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and "rlfm-edge bench: error:" in err


def test_non_integer_episodes_is_a_usage_error(capsys):
    assert run(["bench", "online", "--episodes", "many"]) == 2
    assert "--episodes" in capsys.readouterr().err


def test_bench_without_a_subcommand_prints_help_and_exits_2(capsys):
    assert run(["bench"]) == 2
    assert "online" in capsys.readouterr().out


def test_info_lists_libraries_envs_and_agents_with_reasons(capsys):
    assert run(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("python", "numpy", "torch", "onnxruntime", "tensorrt", "rclpy", "riverswim",
                 "ucbvi", "inference backends"):
        assert word in out


def test_info_json_says_why_each_unavailable_thing_is_unavailable(capsys):
    assert run(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for lib in info["libraries"].values():
        assert (lib["version"] is None) != (lib["unavailable"] is None)
    assert all(isinstance(why, str) and why for why in info["agents"]["unavailable"].values())
    assert "riverswim" in info["envs"]["names"]


def test_bench_online_runs_the_package_model_by_default(tmp_path, capsys):
    rc = run(["bench", "online", "--envs", "riverswim", "--episodes", "2", "--seeds", "1",
              "--out", str(tmp_path), "--workers", "1", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    for agent in ("rlfm", "ucbvi", "qlearning", "psrl", "random"):
        assert f"| riverswim | {agent} |" in printed
    assert json.loads((tmp_path / "results.json").read_text())["config"]["agents"][0] == "rlfm"


def test_bench_takes_benchmark_parameters_after_the_name(tmp_path, capsys):
    rc = run(["bench", "online", "--envs", "deepsea:size=4,garnet:n_states=5,seed=3,chain",
              "--agents", "random", "--episodes", "2", "--seeds", "1", "--out", str(tmp_path),
              "--workers", "1", "--no-progress"])
    assert rc == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["envs"] == ["deepsea:size=4", "garnet:n_states=5,seed=3", "chain"]
    assert results["envs"]["deepsea:size=4"]["n_states"] == 4 * 4 + 1  # N x N and the absorbing state
    assert results["envs"]["garnet:n_states=5,seed=3"]["n_states"] == 5
    assert "| deepsea:size=4 | random |" in capsys.readouterr().out


@pytest.mark.parametrize(("envs", "message"), [
    ("deepsea:sise=20", "envs: 'deepsea:sise=20': deepsea: unknown argument(s) sise"),
    ("deepsea:size", "envs: 'deepsea:size': expected NAME:KEY=VALUE"),
    ("size=20,deepsea", "'size=20' is a parameter without an environment before it"),
    ("deepsea:size=0", "envs: 'deepsea:size=0'"),
])
def test_bad_benchmark_parameters_are_refused_naming_the_spec(envs, message, tmp_path, capsys):
    assert run(["bench", "offline", "--envs", envs, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
