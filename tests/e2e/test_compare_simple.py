"""`mtl-bt compare` with the simple baselines (linear, LightGBM) and the placebo study inside it,
on the tiny real config: rows like every other variant, the same numbers as the standalone
baselines, the MTL-vs-baselines table with Holm, the placebo p-value, the DSR trial count, and
the install hint when scikit-learn / LightGBM are missing."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mtl_bt.cli import main

HERE = Path(__file__).parent
TINY = str(HERE / "tiny.toml")
# the plain sign rule: the default cost-aware rule may never trade a baseline's shrunk forecasts
ARGS = ["--seeds", "2", "--set", "training.epochs=1", "--set", "backtest.signal=sign"]
ARGS += ["--placebo-draws", "3", "--workers", "2"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("simple") / "cmp"
    result = CliRunner().invoke(main, ["compare", TINY, "--out", str(out), *ARGS, "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result


def test_baselines_are_rows_like_every_variant(compared: tuple[Path, object]) -> None:
    out, result = compared
    rows = pd.read_csv(out / "comparison.csv").set_index("variant")
    # the baselines' fits cannot depend on the seed: each runs once, at the first seed
    for name in ("linear", "lightgbm"):
        assert not (out / "runs" / name / "seed_1").exists()
    for name, seeds in (("linear", (0,)), ("lightgbm", (0,))):
        assert rows.loc[name, "kind"] == "simple"
        assert rows.loc[name, "seeds_ok"] == rows.loc[name, "seeds"] == len(seeds)
        sharpes = [
            json.loads((out / "runs" / name / f"seed_{s}" / "metrics.json").read_text())[
                "portfolio"
            ]["sharpe"]
            for s in seeds
        ]
        assert rows.loc[name, "sharpe_mean"] == pytest.approx(np.mean(sharpes))
        for col in ("gross_sharpe_mean", "cost_drag_mean", "turnover_mean"):
            assert math.isfinite(rows.loc[name, col]), col
        assert math.isfinite(rows.loc[name, "return@4_rank_ic_mean"])
        assert math.isfinite(rows.loc[name, "volatility@4_qlike_mean"])
    md = (out / "comparison.md").read_text()
    assert "| linear |" in md and "| lightgbm |" in md
    assert "| ewma[volatility] |" in md and "| har_rv[volatility] |" in md
    # the DSR counts every backtest tried: 3 traded variants (mtl, return-only, ensemble;
    # `sign` has no aux inputs to switch off) x 2 seeds, + linear and lightgbm once; the
    # placebo draws are not strategies tried
    assert "best Sharpe expected from 8 unskilled trials" in md


@pytest.mark.parametrize("model", ["lightgbm", "linear"])
def test_compare_baseline_equals_the_standalone_fit(
    compared: tuple[Path, object], model: str
) -> None:
    """The compare job's predictions are fit_baselines' on the same config (the job adds only
    the EWMA / HAR columns), and its fold metrics are the standalone ones; the run (seed 0
    only) is also what seed 1 would fit: the fits are deterministic."""
    from mtl_bt.compare import baselines as bl
    from mtl_bt.config import load
    from mtl_bt.data import load_frames

    out, _ = compared
    run = out / "runs" / model / "seed_0"
    cfg = load(run / "config.toml")
    assert cfg.training.seed == 0
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"seed": 1})})
    fitted = bl.fit_baselines(cfg, load_frames(cfg.data), [model])
    got = pd.read_parquet(run / "predictions.parquet")
    want = fitted.predictions.drop(columns="model")
    pd.testing.assert_frame_equal(got[list(want.columns)], want)
    metrics = pd.read_csv(run / "fold_metrics.csv")
    assert np.allclose(metrics["value"], fitted.metrics["value"], equal_nan=True)


def test_vs_baselines_table_has_holm_and_a_sentence(compared: tuple[Path, object]) -> None:
    out, result = compared
    table = pd.read_csv(out / "vs_baselines.csv")
    assert list(table["baseline"]) == ["linear", "lightgbm"]
    for raw in ("sharpe_diff_p", "sharpe_diff_seeds_p", "d_return@4_p", "d_volatility@4_p"):
        ok = table[raw].notna()
        assert ok.any(), raw
        assert (table.loc[ok, f"{raw}_holm"] >= table.loc[ok, raw] - 1e-12).all(), raw
    assert (table["sharpe_diff_low"] <= table["sharpe_diff_high"]).all()
    md = (out / "comparison.md").read_text()
    assert "## MTL vs the simple baselines" in md
    line = next(ln for ln in result.output.splitlines() if "simple baseline" in ln)
    assert line.startswith("The best MTL variant, shared_bottom+equal, ")
    assert line in md


def test_placebo_study_runs_inside_compare(compared: tuple[Path, object]) -> None:
    from mtl_bt.compare.placebo import STOP_AFTER, draws_note, sequential_p_value

    out, result = compared
    study = json.loads(
        (out / "placebo" / "shared_bottom+equal" / "seed_0" / "placebo.json").read_text()
    )
    assert study["max_draws"] == 3 and study["stop_after"] == STOP_AFTER
    assert len(study["shuffled"]) == study["draws"] <= 3
    assert study["p_sharpe"] == sequential_p_value(
        study["real"]["sharpe"], [s["sharpe"] for s in study["shuffled"]], STOP_AFTER
    )
    run = json.loads((out / "runs" / "shared_bottom+equal" / "seed_0" / "metrics.json").read_text())
    assert study["real"]["sharpe"] == pytest.approx(run["portfolio"]["sharpe"], abs=1e-9)
    md = (out / "comparison.md").read_text()
    assert "## Placebo backtests" in md and f"p = {study['p_sharpe']:.3f}" in md
    assert (
        f"Placebo (placebo/shared_bottom+equal/seed_0): real Sharpe "
        f"{study['real']['sharpe']:.2f}, p = {study['p_sharpe']:.3f} against its predictions "
        f"block-shuffled in time ({draws_note(study)}; "
    ) in result.output


def _invoke(tmp_path: Path, *args: str) -> object:
    return CliRunner().invoke(main, ["compare", TINY, "--out", str(tmp_path / "c"), *args])


@pytest.mark.parametrize("module", ["lightgbm", "sklearn"])
def test_missing_packages_asked_for_is_exit_2(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    result = _invoke(tmp_path, "--baselines", "linear")
    assert result.exit_code == 2, result.output
    assert "pip install 'mtl-bt[baselines]'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "c" / "runs").exists()  # refused before any work


def test_missing_packages_by_default_is_one_line_and_the_rest_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    result = _invoke(
        tmp_path, "--set", "training.epochs=1", "--placebo-draws", "0", "--workers", "1", "--quiet"
    )
    assert result.exit_code == 0, result.output
    hints = [ln for ln in result.output.splitlines() if "mtl-bt[baselines]" in ln]
    assert hints == [
        "simple baselines (linear, LightGBM) skipped: pip install 'mtl-bt[baselines]' to add them"
    ]
    rows = pd.read_csv(tmp_path / "c" / "comparison.csv")
    assert "linear" not in set(rows["variant"]) and "shared_bottom+equal" in set(rows["variant"])
    assert not (tmp_path / "c" / "placebo").exists()


def test_unknown_baseline_is_refused(tmp_path: Path) -> None:
    result = _invoke(tmp_path, "--baselines", "linear,ridge")
    assert result.exit_code == 2
    assert "unknown baseline(s) ['ridge']" in result.output
    assert not (tmp_path / "c" / "runs").exists()
