"""The GAT: PyG network and dense export twin agree; features and model files are checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from torch_geometric.data import Batch  # noqa: E402

from rlfm_edge.model import ModelConfig, build_features, pad_features  # noqa: E402
from rlfm_edge.model.dense import PAD_LOGIT, DenseGAT  # noqa: E402
from rlfm_edge.model.features import PLAN_SA_FEATURES, successor_edges  # noqa: E402
from rlfm_edge.model.gat import PolicyGAT, to_graph  # noqa: E402
from rlfm_edge.model.io import ModelFileError, load_model, save_model  # noqa: E402
from rlfm_edge.planning import backward_induction  # noqa: E402
from rlfm_edge.stats import CountStats  # noqa: E402


def random_stats(rng, S, A, n):
    stats = CountStats(S, A)
    if n:
        # Skewed successors so that some (s, a) have more than K distinct successors.
        stats.update_batch(rng.integers(0, S, n), rng.integers(0, A, n), rng.random(n),
                           rng.integers(0, S, n))
    return stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dense_twin_matches_pyg_network_on_random_graphs(seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(hidden=16, heads=2, layers=3, max_successors=4, max_states=20,
                      max_actions=6)
    net = PolicyGAT(cfg).eval()
    # Non-zero biases and attention vectors everywhere, so no term hides behind a zero init.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    sizes = [(int(rng.integers(2, 21)), int(rng.integers(2, 7)), int(rng.integers(0, 400)))
             for _ in range(5)] + [(20, 6, 2000), (3, 2, 0)]
    feats = [build_features(random_stats(rng, S, A, n), int(rng.integers(1, 50)), 4)
             for S, A, n in sizes]
    dense = DenseGAT(net).eval()
    with torch.no_grad():
        sparse_out = net(Batch.from_data_list([to_graph(f) for f in feats]))
        inputs = pad_features(feats, cfg.max_states, cfg.max_actions, cfg.max_successors)
        dense_out = dense(*(torch.from_numpy(v) for v in inputs.as_dict().values()))
    offset = 0
    for b, f in enumerate(feats):
        n = f.n_states * f.n_actions
        ref = sparse_out[offset:offset + n].reshape(f.n_states, f.n_actions)
        offset += n
        np.testing.assert_allclose(dense_out[b, :f.n_states, :f.n_actions].numpy(), ref.numpy(),
                                   atol=1e-5, rtol=0)
        assert torch.all(dense_out[b, :, f.n_actions:] == PAD_LOGIT)


def test_dense_twin_runs_in_half_precision_like_in_float():
    """The fp16 path (the torch backend on CUDA) runs here on the CPU: every constant the
    dense twin builds follows the input's dtype, and the logits stay close to fp32's."""
    torch.manual_seed(4)
    rng = np.random.default_rng(4)
    net = PolicyGAT(ModelConfig(hidden=16, heads=2, layers=2, max_successors=4, max_states=12,
                                max_actions=3)).eval()
    feats = [build_features(random_stats(rng, 12, 3, 300), 10, 4),
             build_features(random_stats(rng, 5, 2, 0), 3, 4)]
    inputs = [torch.from_numpy(v) for v in pad_features(feats, 12, 3, 4).as_dict().values()]
    with torch.no_grad():
        full = DenseGAT(net).eval()(*inputs)
        half = DenseGAT(net).half().eval()(*(x.half() if x.is_floating_point() else x for x in inputs))
    assert half.dtype == torch.float16
    np.testing.assert_allclose(half[0].float().numpy(), full[0].numpy(), atol=2e-2, rtol=0)
    np.testing.assert_allclose(half[1, :5, :2].float().numpy(), full[1, :5, :2].numpy(), atol=2e-2, rtol=0)


def test_successor_edges_keep_the_most_visited_first():
    stats = CountStats(5, 1)
    for s_next, n in [(4, 1), (2, 5), (3, 3), (1, 2)]:
        for _ in range(n):
            stats.update(0, 0, 0.0, s_next)
    f = build_features(stats, 10, max_successors=2)
    kept = f.edge_state[f.edge_sa == 0]
    assert kept.tolist() == [2, 3]
    # The mass left out is reported as a feature: 1 - (5 + 3) / 11.
    assert f.sa_x[0, 6] == pytest.approx(1 - 8 / 11, rel=1e-5)


@pytest.mark.parametrize("scale", [1, 2**50])  # 2**50: too large to pack, the lexsort path
def test_successor_edges_order_by_count_then_state_within_each_pair(scale):
    n_sas = np.zeros((6, 2, 6), np.int64)
    n_sas[0, 1, [5, 1, 3, 0]] = [2, 7, 2, 1]
    n_sas[2, 0, [4, 2]] = [1, 1]
    sa, s_next, slot, counts = successor_edges(n_sas * scale, max_successors=3)
    assert sa.tolist() == [1, 1, 1, 4, 4]
    assert s_next.tolist() == [1, 3, 5, 2, 4]
    assert slot.tolist() == [0, 1, 2, 0, 1]
    assert (counts // scale).tolist() == [7, 2, 2, 1, 1]


def test_plan_features_are_backward_induction_on_the_empirical_model():
    rng = np.random.default_rng(4)
    S, A, H = 6, 3, 12
    stats = random_stats(rng, S, A, 600)
    stats.update_batch(np.repeat(np.arange(S), A), np.tile(np.arange(A), S), rng.random(S * A),
                       rng.integers(0, S, S * A))  # every (s, a) tried
    f = build_features(stats, H, max_successors=S)  # K = S: no successor left out
    plan = f.sa_x[:, -PLAN_SA_FEATURES:].reshape(S, A, PLAN_SA_FEATURES) * H
    P, R = stats.P_hat(), stats.R_hat()
    Q_hat, V_hat = backward_induction(P, R, H)
    assert np.allclose(plan[..., 0], Q_hat[0], atol=1e-4)
    assert np.allclose(plan[..., 1], Q_hat[0] - V_hat[0][:, None], atol=1e-4)
    r_top = max(1.0, R.max())
    Q_opt, V_opt = backward_induction(P, R, H, bonus=r_top / np.sqrt(stats.n_sa), v_max=r_top)
    assert np.allclose(plan[..., 2], Q_opt[0], atol=1e-4)
    assert np.allclose(plan[..., 3], Q_opt[0] - V_opt[0][:, None], atol=1e-4)


def test_plan_features_value_untried_actions_optimistically_and_not_empirically():
    stats = CountStats(3, 2)
    for _ in range(4):
        stats.update(0, 0, 0.1, 1)  # state 1 is reached but never left; action 1 never tried
    plan = build_features(stats, 5, 4).sa_x[:, -PLAN_SA_FEATURES:].reshape(3, 2, PLAN_SA_FEATURES)
    assert plan[0, 0, 0] == pytest.approx(0.1 / 5)   # Q̂: one reward, then V̂(1) = 0
    assert plan[0, 1, 0] == 0 and plan[0, 1, 1] == pytest.approx(-0.1 / 5)  # untried: no Q̂
    assert np.all(plan[1:, :, 2] == 1.0)            # Q⁺ of untried: the top reward every step
    # tried: 0.1 + 1/sqrt(4) now, then 1 per step from the unexplored state 1
    assert plan[0, 0, 2] == pytest.approx((5 - 0.4) / 5) and plan[0, 1, 2] == 1.0
    assert plan[0, 0, 3] == pytest.approx(-0.4 / 5)  # so optimism prefers the untried action


def test_features_reject_non_finite_statistics():
    stats = CountStats(3, 2)
    stats.reward_sum[0, 0] = np.nan
    with pytest.raises(ValueError, match="reward_sum"):
        build_features(stats, 10, 4)


def test_features_overflowing_float32_are_refused_naming_the_feature():
    stats = CountStats(3, 2)
    stats.update(0, 1, 1e39, 2)  # finite in float64, inf as the float32 mean reward
    with pytest.raises(ValueError, match=r"sa_x column 3 \(mean reward\) is NaN or inf at row 1"):
        build_features(stats, 10, 4)


@pytest.mark.parametrize("horizon", [float("nan"), float("inf")])
def test_a_bad_horizon_is_a_value_error_naming_the_horizon(horizon):
    with pytest.raises(ValueError, match="horizon: expected a positive integer"):
        build_features(CountStats(3, 2), horizon, 4)


def test_padding_rejects_statistics_above_the_model_size():
    f = build_features(CountStats(30, 2), 10, 4)
    with pytest.raises(ValueError, match="Smax=20"):
        pad_features([f], 20, 4, 4)


def test_model_directory_round_trip_and_manifest_check(tmp_path):
    net = PolicyGAT(ModelConfig(hidden=8, heads=2, layers=1))
    save_model(net, tmp_path / "m", record={"note": "test"})
    loaded = load_model(tmp_path / "m")
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    weights = tmp_path / "m" / "weights.npz"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"weights\.npz: sha256 does not match.*rlfm-edge train"):
        load_model(tmp_path / "m")


def test_the_manifest_covers_only_model_files_and_old_manifests_listing_others_still_load(tmp_path):
    from rlfm_edge.model.io import write_manifest

    m = tmp_path / "m"
    save_model(PolicyGAT(ModelConfig(hidden=8, heads=2, layers=1)), m)
    (m / "notes.txt").write_text("x")
    (m / "weights.npz.abc.tmp").write_bytes(b"a leftover")
    assert set(write_manifest(m)["files"]) == {"weights.npz", "config.json"}
    manifest = json.loads((m / "manifest.json").read_text())
    manifest["files"]["calibration.npz"] = "0" * 64  # listed by an older version, since deleted
    (m / "manifest.json").write_text(json.dumps(manifest))
    assert load_model(m).config.hidden == 8


def test_model_config_mismatch_is_rejected(tmp_path):
    save_model(PolicyGAT(ModelConfig(hidden=8, heads=2, layers=1)), tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "layers": 2}))
    from rlfm_edge.model.io import write_manifest

    write_manifest(tmp_path / "m")
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(tmp_path / "m")


def test_model_config_rejects_bad_values():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(hidden=10, heads=4)
    with pytest.raises(ValueError, match="layers"):
        ModelConfig(layers=0)
