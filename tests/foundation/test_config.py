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
    cfg = config.load(
        overrides=["training.epochs=5", "data.symbols=['AAPL']", "model.architecture=mmoe"]
    )
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


@pytest.mark.parametrize(
    ("override", "key", "section"),
    [
        ("backtest.cash=inf", "backtest.cash", "backtest"),
        ("backtest.max_weight=-inf", "backtest.max_weight", "backtest"),
        ("training.lr=nan", "training.lr", "training"),
        ("training.grad_clip=inf", "training.grad_clip", "training"),
        ("model.dropout=nan", "model.dropout", "model"),
    ],
)
def test_non_finite_floats_are_refused_in_every_section(override, key, section):
    with pytest.raises(ConfigError) as info:
        config.load(overrides=[override])
    assert f"'{key}' in section [{section}]: must be a finite number" in str(info.value)
    assert "inf and nan are not allowed" in str(info.value)


@pytest.mark.parametrize("key", ["since", "until"])
def test_unparseable_since_until_is_refused_on_load(tmp_path, key):
    path = tmp_path / "c.toml"
    path.write_text(f'[data]\n{key} = "last tuesday"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert f"'data.{key}' in section [data]: 'last tuesday' is not a date/time" in message
    assert "ISO format" in message and "2024-01-01" in message and str(path) in message


@pytest.mark.parametrize("until", ["2024-01-01", "2023-06-01", "2024-01-01T00:00:00Z"])
def test_until_must_be_after_since(until):
    with pytest.raises(ConfigError) as info:
        config.load(overrides=["data.since='2024-01-01'", f"data.until='{until}'"])
    message = str(info.value)
    assert "in section [data]: data.until" in message
    assert "must be later than data.since ('2024-01-01')" in message


def test_valid_times_stay_strings_and_toml_dates_are_accepted(tmp_path):
    cfg = config.load(overrides=["data.since='2024-01-01 05:00'", "data.until='2024-02-01'"])
    assert (cfg.data.since, cfg.data.until) == ("2024-01-01 05:00", "2024-02-01")
    path = tmp_path / "c.toml"
    path.write_text("[data]\nsince = 2024-01-01\nuntil = 2024-02-01T00:00:00Z\n")  # TOML literals
    cfg = config.load(path)
    assert cfg.data.since == "2024-01-01" and cfg.data.until == "2024-02-01T00:00:00+00:00"
    path.write_text(config.dumps(cfg))
    assert config.load(path) == cfg


@pytest.mark.parametrize("timeframe", ["1x", "hourly", "0h", "1M", "h1"])
def test_unknown_timeframe_is_refused_on_load(timeframe):
    with pytest.raises(ConfigError) as info:
        config.load(overrides=[f"data.timeframe='{timeframe}'"])
    message = str(info.value)
    assert f"'data.timeframe' in section [data]: '{timeframe}' is not a bar size" in message
    assert "1m, 15m, 1h, 4h, 1d, 1w" in message


@pytest.mark.parametrize("timeframe", ["1m", "15min", "4h", "1d", "1w", ""])
def test_known_timeframes_are_kept_as_given(timeframe):
    assert config.load(overrides=[f"data.timeframe='{timeframe}'"]).data.timeframe == timeframe


@pytest.mark.parametrize("symbols", ["['']", "['BTC/USDT', '   ']"])
def test_blank_symbols_are_refused(symbols):
    with pytest.raises(ConfigError) as info:
        config.load(overrides=[f"data.symbols={symbols}"])
    message = str(info.value)
    assert "'data.symbols' in section [data]: entry " in message
    assert "every symbol must be a non-blank name" in message


@pytest.mark.parametrize(
    ("table", "keys"),
    [
        ("{lookback = 8}", "model.sequence.lookback is"),
        ("{hidden = 4}", "model.sequence.hidden is"),
        ('{encoder = "none", lookback = 8, hidden = 4}', "hidden and model.sequence.lookback are"),
    ],
)
def test_sequence_settings_without_an_encoder_are_refused(tmp_path, table, keys):
    path = tmp_path / "c.toml"
    path.write_text(f"[model]\nsequence = {table}\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert "in section [model.sequence]: model.sequence." in message and keys in message
    assert 'model.sequence.encoder is "none"' in message and '"gru" or "conv"' in message


def test_sequence_settings_with_an_encoder_round_trip(tmp_path):
    cfg = config.load(overrides=["model.sequence={encoder='gru', lookback=8, hidden=4}"])
    assert (cfg.model.sequence.lookback, cfg.model.sequence.hidden) == (8, 4)
    path = tmp_path / "c.toml"
    path.write_text(config.dumps(cfg))
    assert config.load(path) == cfg
    # without an encoder the unused keys are not written, so a run's config.toml reloads
    plain = config.load()
    assert "lookback" not in config.dumps(plain)
    assert config.from_dict(plain.model_dump(mode="json")) == plain


def test_cli_refuses_infinite_cash_before_any_work(tmp_path):
    from click.testing import CliRunner

    from mtl_bt.cli import main

    out = tmp_path / "out"
    args = ["run", "crypto", "--out", str(out), "--set", "backtest.cash=inf", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "'backtest.cash' in section [backtest]: must be a finite number" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing trained, no config.toml written
