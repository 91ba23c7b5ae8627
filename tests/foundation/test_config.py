"""Config loading: unknown keys and bad values are errors naming the key."""

import pytest

from mtl_bt import config
from mtl_bt.errors import ConfigError


def test_defaults_are_valid_and_round_trip_through_toml(tmp_path):
    cfg = config.load()
    path = tmp_path / "c.toml"
    path.write_text(config.dumps(cfg))
    assert config.load(path) == cfg
    assert cfg.task_names() == ["return@1", "direction@1", "volatility@1", "volume@1"]


def test_unknown_key_names_key_and_section(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[training]\nepocs = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'training.epocs' in section \[training\]"):
        config.load(path)


def test_out_of_range_value_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[training]\nlr = -1\n")
    with pytest.raises(ConfigError, match="training.lr"):
        config.load(path)


def test_overrides_parse_toml_values():
    cfg = config.load(overrides=["training.epochs=5", "data.symbols=['AAPL']", "model.architecture=mmoe"])
    assert cfg.training.epochs == 5
    assert cfg.data.symbols == ["AAPL"]
    assert cfg.model.architecture == "mmoe"


def test_bad_override_and_missing_file():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config.load(overrides=["training.epochs"])
    with pytest.raises(ConfigError, match="not found"):
        config.load("/nonexistent/config.toml")


def test_multi_horizon_task_names_and_duplicate_horizons(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[tasks]]\nname = "return"\nhorizons = [1, 5, 20]\n')
    cfg = config.load(path)
    assert cfg.task_names() == ["return@1", "return@5", "return@20"]
    assert cfg.max_horizon() == 20
    path.write_text('[[tasks]]\nname = "return"\nhorizons = [1, 1]\n')
    with pytest.raises(ConfigError, match="distinct"):
        config.load(path)
