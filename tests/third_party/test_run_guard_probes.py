"""`mtl-bt run` refuses what a plugin author can get wrong, on every symbol of the run:
a peek on the config's second symbol only, two caches that hide a peek from every later
call, a plugin that raises; the honest controls run."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mtl_bt.cli import main
from mtl_bt.config import dumps
from mtl_bt.testing import garch_bars, tiny_config
from mtl_bt.training import guards


def _run(tmp_path, names):
    path = tmp_path / "cfg.toml"
    path.write_text(dumps(tiny_config(features={"names": ["log_return", *names]})))
    return CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "o"), "--quiet"])


def _one_line_refusal(result, *parts):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, result.output
    for part in parts:
        assert part in error[0], error[0]
    assert not (result.output and "Sharpe" in result.output)


def test_a_peek_on_the_second_symbol_only_is_refused(probes, tmp_path):
    result = _run(tmp_path, ["eth_peek"])
    _one_line_refusal(
        result, "feature 'eth_peek' from plugin 'probe_plugins' looks ahead on ETH/USDT"
    )
    assert not (tmp_path / "o" / "metrics.json").exists()


@pytest.mark.parametrize("name", ["cached_once", "cached_by_first_bar"])
def test_a_cache_that_hides_a_peek_is_refused(probes, tmp_path, name):
    result = _run(tmp_path, [name])
    _one_line_refusal(
        result,
        f"feature {name!r} from plugin 'probe_plugins' on BTC/USDT (bars 0..959): state between "
        "calls",
        "keeps state between calls",
    )


def test_a_raising_feature_is_one_line_naming_it(probes, tmp_path):
    result = _run(tmp_path, ["raising"])
    _one_line_refusal(
        result,
        "feature 'raising' from plugin 'probe_plugins' raised ZeroDivisionError on BTC/USDT",
        "probe: division by zero",
    )


def test_a_raising_feature_with_the_guards_off_is_one_line_naming_it(probes, tmp_path, monkeypatch):
    """--no-guards: the guard never calls the plugin, so building the dataset is the first
    call; compute names the plugin and the symbol there (no traceback)."""
    from mtl_bt.safety import ENV

    monkeypatch.setenv(ENV, "")  # restored after the test (the CLI sets it to 1)
    path = tmp_path / "cfg.toml"
    path.write_text(dumps(tiny_config(features={"names": ["log_return", "raising"]})))
    args = ["run", str(path), "--out", str(tmp_path / "o"), "--quiet", "--no-guards"]
    result = CliRunner().invoke(main, args)
    _one_line_refusal(
        result,
        "feature 'raising' from plugin 'probe_plugins' raised ZeroDivisionError on BTC/USDT",
        "probe: division by zero",
    )


def test_the_honest_controls_pass_the_guard_on_every_symbol(probes):
    from mtl_bt.features import FeatureSpec

    frames = {s: garch_bars(900, seed=i, freq="1h", symbol=s) for i, s in enumerate("AB")}
    spec = FeatureSpec(names=[*probes.HONEST, "hour_of_day"])
    assert guards.check_causal(spec, [], frames) == len(probes.HONEST) + 1


def test_guard_windows_cover_the_whole_history():
    assert guards.windows(10_000, 1500, 3) == [
        slice(0, 1500),
        slice(4250, 5750),
        slice(8500, 10_000),
    ]
    assert guards.windows(900, 1500, 3) == [slice(0, 900)]
