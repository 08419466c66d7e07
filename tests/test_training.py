"""The synthetic prior, example generation and the training loop (tiny sizes)."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from rlfm_edge.mdp import TabularMDP  # noqa: E402
from rlfm_edge.planning import value_iteration  # noqa: E402
from rlfm_edge.training.data import BEHAVIOURS, DataConfig, collect, load_shard, make_example, save_shard  # noqa: E402
from rlfm_edge.training.prior import FAMILIES, PriorConfig, layered, lure, reach, sample_mdp  # noqa: E402
from rlfm_edge.training.rollout import rollout  # noqa: E402


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_yields_valid_mdps_within_the_configured_sizes(family):
    prior = PriorConfig(s_max=25, a_max=5, h_min=3, h_max=30, weights={family: 1.0})
    rng = np.random.default_rng(0)
    for _ in range(30):
        mdp = sample_mdp(rng, prior)  # TabularMDP validates P, R, mu0
        assert 2 <= mdp.n_states <= 25 and 2 <= mdp.n_actions <= 5 and 3 <= mdp.horizon <= 30
        assert mdp.meta["family"] == family


@pytest.mark.parametrize("seed", range(20))
def test_layered_mdps_never_revisit_a_state_and_hide_their_reward_deep(seed):
    """Time is in the state: apart from absorbing self-loops the transition graph is
    acyclic, the start can shift both ways, and the prize is not at the start."""
    rng = np.random.default_rng(seed)
    S, A = int(rng.integers(5, 80)), int(rng.integers(2, 6))
    P, R = layered(rng, S, A)
    moves = (P.sum(axis=1) > 0) & ~np.eye(S, dtype=bool)
    assert np.all(np.diagonal(P, axis1=0, axis2=2)[:, moves.any(axis=1)] == 0)
    paths = moves.astype(int)
    for _ in range(S):  # nilpotent: no path is longer than S steps, so no cycle
        paths = paths @ moves
    assert not paths.any()
    first = np.flatnonzero(P[0].max(axis=0) > 0)  # from the start: left, right, stay
    assert first.size >= 2
    assert R[0].max() < R.max() and R.max() >= 0.5  # the prize is not at the start


@pytest.mark.parametrize("seed", range(20))
def test_reach_mdps_pay_their_prize_once(seed):
    """The goal pays on arrival and then the episode is over in effect: the goal, the holes
    and the end all lead to the end, which pays nothing; the best return is at most one prize
    plus the tiny step rewards."""
    rng = np.random.default_rng(seed)
    S, A = int(rng.integers(3, 80)), int(rng.integers(2, 6))
    P, R = reach(rng, S, A)
    end = S - 1
    terminal = np.flatnonzero(P[:, 0, end] == 1.0)
    assert end in terminal and terminal.size >= 2  # the end and at least the goal
    assert np.all(P[terminal][:, :, end] == 1.0) and np.all(R[terminal] == 0.0)
    Q, _ = value_iteration(TabularMDP(P, R, np.eye(S)[0], 100))
    assert Q[0].max() <= 1.0 + 100 * 0.005


def test_reach_rewards_stay_in_the_unit_interval_with_a_step_reward_and_a_certain_arrival():
    """A step reward plus a prize reached with probability 1 once summed to 1.002 (found by
    a training run 17,700 MDPs in); small MDPs hit that corner within a few thousand draws."""
    for seed in range(3000):
        rng = np.random.default_rng(seed)
        _, R = reach(rng, int(rng.integers(3, 12)), int(rng.integers(2, 4)))
        assert R.min() >= 0.0 and R.max() <= 1.0, seed


def test_lure_mdps_tempt_at_the_start_and_pay_most_at_the_far_end():
    """Before the action permutation, action 0 goes forward and action 1 cashes out: at the
    start the lure pays more than going forward, the largest reward is forward at the far
    end, and whether the trip is worth it depends on the MDP: with one step left a lure is
    always best, with a long horizon forward wins in some lines and the lure in others."""
    first_moves = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        S, A = int(rng.integers(3, 12)), int(rng.integers(2, 6))
        P, R = lure(rng, S, A)
        assert R.min() >= 0.0 and R.max() <= 1.0
        assert R[0, 1:].max() > R[0, 0]
        assert R[S - 1, 0] == R.max() > R[: S - 1].max()
        assert np.all(P[:, 1, 0] > 0)  # action 1 sends the agent back to the start
        Q_short, _ = value_iteration(TabularMDP(P, R, np.eye(S)[0], 1))
        assert Q_short[0][0].argmax() != 0
        Q_long, _ = value_iteration(TabularMDP(P, R, np.eye(S)[0], 100 * S))
        first_moves.add("forward" if Q_long[0][0].argmax() == 0 else "lure")
    assert first_moves == {"forward", "lure"}


def test_prior_is_reproducible_from_its_seed():
    a = sample_mdp(np.random.default_rng(7))
    b = sample_mdp(np.random.default_rng(7))
    assert np.array_equal(a.P, b.P) and np.array_equal(a.R, b.R) and a.horizon == b.horizon


def test_prior_config_rejects_unknown_families_and_bad_ranges():
    with pytest.raises(ValueError, match="unknown families"):
        PriorConfig(weights={"maze": 1.0})
    with pytest.raises(ValueError, match="s_min"):
        PriorConfig(s_min=10, s_max=5)


def test_rollout_counts_exactly_episodes_times_horizon_transitions():
    mdp = sample_mdp(np.random.default_rng(3))
    uniform = np.full((mdp.horizon, mdp.n_states, mdp.n_actions), 1 / mdp.n_actions)
    stats = rollout(mdp, uniform, 17, np.random.default_rng(0))
    assert stats.n_transitions == 17 * mdp.horizon
    # Only transitions the MDP allows appear in the counts.
    assert np.all(mdp.P[stats.n_sas > 0] > 0)


@pytest.mark.parametrize("behaviour, refresh, anneal", [(b, "rounds", None) for b in BEHAVIOURS]
                         + [("model", "doubling", None), ("model", "doubling", 30.0)])
def test_behaviours_collect_the_requested_number_of_episodes(behaviour, refresh, anneal, tmp_path):
    from rlfm_edge.model import ModelConfig
    from rlfm_edge.model.gat import PolicyGAT
    from rlfm_edge.model.io import save_model

    save_model(PolicyGAT(ModelConfig(hidden=8, heads=2, layers=1)), tmp_path / "m")
    mdp = sample_mdp(np.random.default_rng(5))
    Q, _ = value_iteration(mdp)
    cfg = DataConfig(model_dir=str(tmp_path / "m"), model_temperature=0.3, model_refresh=refresh,
                     model_anneal_visits=anneal)
    for episodes in (12, 1, 0):
        stats = collect(mdp, Q, behaviour, episodes, np.random.default_rng(1), cfg)
        assert stats.n_transitions == episodes * mdp.horizon


def test_the_model_behaviour_needs_a_model_directory():
    with pytest.raises(ValueError, match="model_dir"):
        DataConfig(behaviour_weights=(0, 0, 0, 0, 1))


@pytest.mark.parametrize("anneal", [0.0, -5.0])
def test_model_anneal_visits_must_be_positive(anneal):
    with pytest.raises(ValueError, match="model_anneal_visits"):
        DataConfig(model_anneal_visits=anneal)


def test_examples_are_deterministic_and_survive_a_shard_round_trip(tmp_path):
    cfg = DataConfig(max_episodes=20)
    examples = [make_example(s, PriorConfig(s_max=10), cfg) for s in range(5)]
    again = make_example(3, PriorConfig(s_max=10), cfg)
    assert np.array_equal(again[0].sa_x, examples[3][0].sa_x)
    for feats, q, _ in examples:
        assert q.shape == (feats.n_states, feats.n_actions)
        assert q.min() >= 0 and q.max() <= 1
    save_shard(tmp_path / "s.npz", examples)
    loaded = load_shard(tmp_path / "s.npz")
    for (f, q, _), (g, q2) in zip(examples, loaded, strict=True):
        assert np.array_equal(f.edge_state, g.edge_state) and np.array_equal(q, q2)


def test_training_reduces_the_loss_and_resumes_from_its_checkpoint(tmp_path):
    from rlfm_edge.training.train import TrainConfig, train

    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "d"), val_dir=str(tmp_path / "v"),
        n_examples=256, n_val=64, epochs=3, batch_size=32, lr=3e-3, workers=1,
        model={"hidden": 16, "heads": 2, "layers": 2},
        prior={"s_max": 8, "a_max": 3, "h_max": 15}, data={"max_episodes": 20},
    )
    model_dir = train(cfg)
    import json

    record = json.loads((model_dir / "training_record.json").read_text())
    losses = [h["train_loss"] for h in record["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    # A longer run picks up where the checkpoint stopped instead of starting again.
    cfg.epochs = 4
    record = json.loads((train(cfg) / "training_record.json").read_text())
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3, 4]
    # It reused the data, and still reports what making them cost.
    from rlfm_edge.training.data import generation_seconds

    made = generation_seconds(tmp_path / "d") + generation_seconds(tmp_path / "v")
    assert made > 0.05 and record["data_generation_s"] == pytest.approx(made)


def test_training_config_rejects_unknown_fields(tmp_path):
    from rlfm_edge.training.train import TrainConfig

    path = tmp_path / "c.yaml"
    path.write_text("epochz: 3\n")
    with pytest.raises(ValueError, match="epochz"):
        TrainConfig.from_yaml(path)


def test_mdp_loss_weighting_averages_each_mdps_own_state_mean_and_is_checked():
    import torch

    from rlfm_edge.training.losses import boltzmann_cross_entropy
    from rlfm_edge.training.train import TrainConfig

    # Two MDPs in one batch: MDP 0 has one state, MDP 1 three; two actions per state.
    logits = torch.tensor([0.0, 1.0, 2.0, 0.0, 0.5, 0.5, -1.0, 1.0])
    q = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    owner = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    per_state = torch.stack([boltzmann_cross_entropy(logits[owner == s], q[owner == s],
                                                     torch.zeros(2, dtype=torch.long), 1, 0.5)
                             for s in range(4)])
    graph_of_state = torch.tensor([0, 1, 1, 1])
    sizes = torch.bincount(graph_of_state).double()
    weight = 1.0 / (sizes[graph_of_state] * 2)
    by_mdp = boltzmann_cross_entropy(logits, q, owner, 4, 0.5, weight)
    assert by_mdp.item() == pytest.approx((per_state[0] + per_state[1:].mean()).item() / 2)
    assert by_mdp.item() != pytest.approx(per_state.mean().item())
    assert boltzmann_cross_entropy(logits, q, owner, 4, 0.5).item() == pytest.approx(per_state.mean().item())
    with pytest.raises(ValueError, match="loss_weight"):
        TrainConfig(loss_weight="graph")


def test_validation_shares_ties_instead_of_picking_action_zero():
    from rlfm_edge.mdp import TabularMDP
    from rlfm_edge.training.validate import _normalized_value

    mdp = TabularMDP(np.ones((1, 2, 1)), np.array([[0.0, 1.0]]), np.ones(1), 1)
    assert _normalized_value(mdp, np.zeros((1, 2))) == pytest.approx(0.5)  # argmax: 0.0
    assert _normalized_value(mdp, np.array([[0.0, 2.0]])) == pytest.approx(1.0)


def test_warm_start_from_a_model_without_plan_features_keeps_its_weights_and_zeroes_the_new_inputs(tmp_path):
    import torch

    from rlfm_edge.model.config import ModelConfig
    from rlfm_edge.model.features import BASE_SA_FEATURES, SA_FEATURES
    from rlfm_edge.model.gat import PolicyGAT
    from rlfm_edge.model.io import save_model
    from rlfm_edge.training.train import _warm_start

    config = ModelConfig(hidden=16, heads=2, layers=2)
    legacy = PolicyGAT(config)
    with torch.no_grad():  # what a model trained before the plan features stored
        legacy.sa_in[0].weight = torch.nn.Parameter(legacy.sa_in[0].weight[:, :BASE_SA_FEATURES].clone())
    save_model(legacy, tmp_path / "legacy")
    net = PolicyGAT(config)
    _warm_start(net, tmp_path / "legacy")
    first = net.sa_in[0].weight
    assert first.shape[1] == SA_FEATURES
    assert torch.equal(first[:, :BASE_SA_FEATURES], legacy.sa_in[0].weight)
    assert not first[:, BASE_SA_FEATURES:].any()
    for name, value in legacy.state_dict().items():
        if name != "sa_in.0.weight":
            assert torch.equal(net.state_dict()[name], value), name
    with pytest.raises(ValueError, match="init_from"):
        _warm_start(PolicyGAT(ModelConfig(hidden=8, heads=2, layers=2)), tmp_path / "legacy")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A factory of tiny training configs sharing one generated data set (made once: ~2 s)."""
    from rlfm_edge.training.train import TrainConfig

    base = tmp_path_factory.mktemp("tiny")

    def make(run: str, **overrides) -> TrainConfig:
        fields = dict(out_dir=str(base / run), data_dir=str(base / "d"), val_dir=str(base / "v"),
                      n_examples=96, n_val=16, epochs=3, batch_size=32, lr=3e-3, workers=1,
                      model={"hidden": 8, "heads": 2, "layers": 1},
                      prior={"s_max": 6, "a_max": 3, "h_max": 10}, data={"max_episodes": 10})
        return TrainConfig(**{**fields, **overrides})

    return make


def test_a_resumed_run_ends_with_exactly_the_weights_of_an_uninterrupted_one(tiny_run, monkeypatch):
    """Bitwise: on CPU the same batches in the same order give the same floats, and the only
    randomness of training is the shuffle, which is reseeded every epoch (a resume used to
    replay epoch 1's order); the checkpoint restores weights, optimiser and schedule."""
    import torch

    import rlfm_edge.training.train as T
    from rlfm_edge.model.io import read_weights

    whole = T.train(tiny_run("whole"))
    save = T._save_checkpoint

    def interrupt_after_epoch_2(path, net, opt, sched, epoch, history):
        save(path, net, opt, sched, epoch, history)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(T, "_save_checkpoint", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        T.train(tiny_run("resumed"))
    monkeypatch.undo()
    assert torch.load(tiny_run("resumed").out_dir + "/checkpoint.pt", weights_only=True)["epoch"] == 2
    resumed = T.train(tiny_run("resumed"))
    (_, a), (_, b) = read_weights(whole), read_weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_ranks_stop_together_on_a_time_budget_and_rank_0_writes_the_model(tiny_run, tmp_path):
    """Two gloo ranks on CPU: each used to stop on its own clock, leaving the other in backward
    ("Connection closed by peer") and no model; rank 0's clock now decides for both."""
    import dataclasses
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    cfg = tiny_run("ddp", epochs=500, time_budget_s=1.0)
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(dataclasses.asdict(cfg)))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(_free_port()), "-m", "rlfm_edge.training.train", "--config", str(config)],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env,
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((Path(cfg.out_dir) / "model" / "training_record.json").read_text())
    assert record["world_size"] == 2 and record["training_s"] < 30


@pytest.mark.parametrize("damage", ["flip a byte", "truncate"])
def test_a_damaged_shard_is_refused_naming_its_path(damage, tmp_path):
    """A raw BadZipFile named neither the file nor what to do about it."""
    path = tmp_path / "shard_1_0000.npz"
    save_shard(path, [make_example(s, PriorConfig(s_max=6), DataConfig(max_episodes=5)) for s in range(3)])
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[:100]
    else:
        raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    message = re.escape(f"{path}: unreadable shard") + ".*delete it to regenerate"
    with pytest.raises(ValueError, match=message):
        load_shard(path)


@pytest.mark.parametrize("change, differs", [
    ({"cfg": DataConfig(max_episodes=5, p_empty=0.5)}, r"data\.p_empty"),
    ({"seed": 2}, r"'seed'"),
    ({"n_examples": 3}, r"n_examples"),
    ({"prior": PriorConfig(s_max=7)}, r"prior\.s_max"),
])
def test_a_data_folder_made_with_other_settings_is_refused_naming_them(change, differs, tmp_path):
    """Shards are kept whenever their file exists, so other settings used to reuse them silently."""
    from rlfm_edge.training.data import generate, generation_seconds

    args = {"n_examples": 4, "seed": 1, "prior": PriorConfig(s_max=6), "cfg": DataConfig(max_episodes=5)}
    shards = generate(tmp_path, **args, shard_size=4, workers=1)
    made = generation_seconds(tmp_path)
    assert generate(tmp_path, **args, shard_size=4, workers=1) == shards  # same settings: kept
    assert made > 0 and generation_seconds(tmp_path) == made  # reusing costs nothing more
    with pytest.raises(ValueError, match=rf"other \[.*{differs}.*delete this one"):
        generate(tmp_path, **{**args, **change}, shard_size=4, workers=1)
