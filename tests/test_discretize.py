import numpy as np
import pytest
import yaml

from rlfm_edge.discretize import Discretizer
from rlfm_edge.inference.base import ModelLimitError


def test_state_index_is_mixed_radix_of_uniform_bins_last_dimension_fastest():
    d = Discretizer.uniform([0.0, -1.0], [1.0, 1.0], [4, 3])
    assert d.n_states == 12
    rng = np.random.default_rng(0)
    for x in rng.uniform([0, -1], [1, 1], (200, 2)):
        b0 = min(int(x[0] * 4), 3)
        b1 = min(int((x[1] + 1) / 2 * 3), 2)
        assert d.state(x) == np.ravel_multi_index((b0, b1), (4, 3))


def test_out_of_range_values_fall_in_edge_bins_and_are_counted():
    d = Discretizer.uniform([0.0], [1.0], 5)
    assert d.state([-3.0]) == 0
    assert d.state([7.0]) == 4
    assert d.state([0.5]) == 2
    assert d.clipped == 2


@pytest.mark.parametrize("obs", [[np.nan, 0.0], [0.0, np.inf], [0.0], [0.0, 0.0, 0.0]])
def test_non_finite_or_wrong_length_observation_raises(obs):
    d = Discretizer.uniform([0, 0], [1, 1], 2)
    with pytest.raises(ValueError, match="observation"):
        d.state(obs)


def test_quantile_bins_share_recorded_data_about_equally():
    rng = np.random.default_rng(1)
    data = np.column_stack([rng.exponential(1.0, 4000), rng.normal(0, 5, 4000)])
    d = Discretizer.fit_quantiles(data, [4, 2])
    counts = np.bincount([d.state(x) for x in data], minlength=d.n_states)
    assert d.n_states == 8
    assert counts.min() > 0.8 * len(data) / 8
    assert d.clipped == 0


def test_fit_quantiles_rejects_constant_or_non_finite_data():
    with pytest.raises(ValueError, match="constant"):
        Discretizer.fit_quantiles(np.ones((10, 1)), 3)
    with pytest.raises(ValueError, match="NaN"):
        Discretizer.fit_quantiles(np.array([[0.0], [np.nan], [1.0]]), 2)


def test_yaml_round_trip_keeps_the_mapping(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.normal(size=(500, 3))
    d = Discretizer.fit_quantiles(data, [3, 4, 2], names=["x", "v", "theta"])
    path = d.save(tmp_path / "bins.yaml")
    back = Discretizer.load(path)
    assert back.bins == d.bins
    assert [dim.name for dim in back.dimensions] == ["x", "v", "theta"]
    assert all(back.state(x) == d.state(x) for x in rng.normal(size=(100, 3)))


def test_robot_config_with_a_discretizer_section_loads(tmp_path):
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump({"discretizer": {"dimensions": [
        {"name": "pos", "low": -1.2, "high": 0.6, "bins": 8}]}, "n_actions": 3}))
    assert Discretizer.load(path).n_states == 8


@pytest.mark.parametrize("dim, message", [
    ({"low": 0, "high": 1, "bins": 0}, r"dimensions\[0\]\.bins: expected a positive integer"),
    ({"low": 1, "high": 1, "bins": 2}, r"dimensions\[0\]: expected finite low < high"),
    ({"low": 0, "high": "a", "bins": 2}, r"dimensions\[0\]\.high: expected a number"),
    ({"low": 0, "high": 1, "edges": [0.6, 0.3]}, r"dimensions\[0\]\.edges: must be ascending"),
    ({"low": 0, "high": 1, "edges": [2.0]}, r"dimensions\[0\]\.edges: must be ascending"),
    ({"low": 0, "high": 1, "bins": 5, "edges": [0.5]}, r"dimensions\[0\]\.bins: 5 disagrees"),
    ({"low": 0, "high": 1, "bins": 2, "colour": 1}, r"unknown field\(s\) \['colour'\]"),
])
def test_invalid_config_names_the_field(tmp_path, dim, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"dimensions": [dim]}))
    with pytest.raises(ValueError, match=message) as info:
        Discretizer.load(path)
    assert str(path) in str(info.value)


def test_missing_or_malformed_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        Discretizer.load(tmp_path / "nope.yaml")
    (tmp_path / "x.yaml").write_text("dimensions: [")
    with pytest.raises(ValueError, match="not valid YAML"):
        Discretizer.load(tmp_path / "x.yaml")
    (tmp_path / "y.yaml").write_text("version: 2\ndimensions: []\n")
    with pytest.raises(ValueError, match="version: expected 1"):
        Discretizer.load(tmp_path / "y.yaml")


def test_check_fits_rejects_more_states_than_the_model_serves():
    d = Discretizer.uniform([0] * 3, [1] * 3, 8)
    d.check_fits(512)
    with pytest.raises(ModelLimitError, match="512 states but the model serves at most 256"):
        d.check_fits(256)
