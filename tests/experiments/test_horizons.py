"""The multi-horizon experiment (TCTS's claim): variants, pairing, the seed x time interval and
the command's one-line errors, on a tiny real config (two bundled crypto pairs, 1 epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.cli.configs import load_config
from mtl_bt.experiments import horizons as hz
from mtl_bt.experiments.common import metric_terms
from mtl_bt.metrics.prediction import rank_ic

TINY = str(Path(__file__).parents[1] / "e2e" / "tiny.toml")
QUICK = ["training.epochs=1"]


@pytest.fixture(scope="module")
def base():
    return load_config(TINY, QUICK)


@pytest.fixture(scope="module")
def experiment(base, tmp_path_factory):
    """One real run: 2 seeds x 2 variants x 2 folds of the tiny config."""
    out = tmp_path_factory.mktemp("hz")
    setup = hz.make_setup(base, None, None, None)
    table = hz.run(base, setup, seeds=[0, 1], out=out, workers=1)
    return out, setup, table


def test_default_setup_is_the_traded_horizon_with_aux_1_2_3(base):
    setup = hz.make_setup(base, None, None, None)
    assert (setup.main, setup.aux, setup.weightings, setup.purge) == (4, (1, 2, 3), ("equal",), 4)
    # the main horizon is never its own auxiliary
    assert hz.make_setup(base, 2, None, None).aux == (1, 3)


def test_single_has_only_the_main_head_and_aux_has_the_others(base):
    setup = hz.make_setup(base, 4, [1, 2, 3], ["equal", "uncertainty"])
    cfgs = hz.variant_configs(base, setup)
    assert list(cfgs) == ["single", "aux_equal", "aux_uncertainty"]
    assert cfgs["single"].task_names() == ["return@4"]
    for name in ("aux_equal", "aux_uncertainty"):
        assert cfgs[name].task_names() == ["return@4", "return@1", "return@2", "return@3"]
    assert cfgs["aux_uncertainty"].weighting.name == "uncertainty"
    same = ("model", "training", "walk_forward", "features", "data")
    for cfg in cfgs.values():  # identical apart from tasks and weighting
        assert cfg.walk_forward.purge_bars == 4
        for section in same:
            assert getattr(cfg, section) == getattr(cfgs["single"], section), section


def test_trained_variants_have_their_heads_and_share_folds(experiment):
    out, setup, _ = experiment
    runs = sorted((out / "runs").iterdir())
    assert [p.name for p in runs] == ["aux_equal", "single"]
    for variant, heads in (("single", ["return@4"]), ("aux_equal", setup_heads(setup))):
        for fold_dir in sorted((out / "runs" / variant).glob("seed_*/fold_*")):
            cols = pd.read_parquet(fold_dir / "predictions.parquet").columns
            assert sorted(c for c in cols if c.startswith("return@")) == sorted(heads)


def setup_heads(setup: hz.Setup) -> list[str]:
    return [setup.main_task, *(f"return@{h}" for h in setup.aux)]


def test_table_shape_and_pairing(experiment):
    out, setup, table = experiment
    symbols = ["BTC/USDT", "ETH/USDT"]
    assert len(table) == 2 * (1 + len(symbols))  # (rank IC, MSE) x (pooled, each asset)
    assert list(table["symbol"]) == ["all", "all", *symbols, *symbols]
    assert set(table["variant"]) == {"aux_equal"} and (table["seeds"] == 2).all()
    assert ((table["low"] <= table["diff"]) & (table["diff"] <= table["high"])).all()
    mse = table["metric"] == "mse"
    assert (table.loc[mse, "zero_forecast"] > 0).all()
    assert table.loc[~mse, "zero_forecast"].isna().all()
    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) == 2 * 2 * len(symbols) * 2  # metrics x seeds x assets x folds
    # both arms are scored on the same bars of every cell: the pooled difference is the
    # bar-weighted mean of the cells' differences, and aux - single of the arms' means
    for metric in ("rank_ic", "mse"):
        row = table[(table["metric"] == metric) & (table["symbol"] == "all")].iloc[0]
        c = cells[cells["metric"] == metric]
        assert row["diff"] == pytest.approx((c["diff"] * c["n"]).sum() / c["n"].sum(), rel=1e-9)
        assert row["diff"] == pytest.approx(row["aux"] - row["single"], rel=1e-9)
    assert (out / "table.md").read_text().count("\n| aux_equal |") == len(table)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["jobs"] == summary["jobs_trained"] == 8 and summary["job_seconds"] > 0


def test_a_rerun_reuses_every_job(experiment, base):
    out, setup, table = experiment
    again = hz.run(base, setup, seeds=[0, 1], out=out, workers=1)
    pd.testing.assert_frame_equal(again, table)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["jobs_trained"] == 0 and summary["jobs"] == 8 and summary["job_seconds"] > 0


def test_cell_rank_ic_and_mse_match_the_run_metrics(experiment):
    """The per-cell numbers are the trainer's metrics of the single model's own fold files."""
    out, setup, _ = experiment
    cells = pd.read_csv(out / "cells.csv")
    fold = int(cells["fold"].iloc[0])
    pred = pd.read_parquet(hz.job_dir(out, "single", 1, fold) / "predictions.parquet")
    task = setup.main_task
    for symbol, part in pred.groupby("symbol"):
        ok = np.isfinite(part[f"target_{task}"])
        p, y = part[task][ok].to_numpy(), part[f"target_{task}"][ok].to_numpy()
        mine = cells[(cells["seed"] == 1) & (cells["symbol"] == symbol) & (cells["fold"] == fold)]
        by_metric = mine.set_index("metric")
        assert by_metric.loc["rank_ic", "b"] == pytest.approx(rank_ic(p, y), abs=1e-12)
        assert by_metric.loc["mse", "b"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
        assert (mine["n"] == ok.sum()).all()


@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1) | st.just(np.nan)), min_size=1))
def test_mse_terms_mean_is_the_mse(pairs):
    """Law: the per-bar terms of ``mse`` average to the MSE of the usable pairs; a bar
    without a target is NaN (left out), as for every other metric."""
    p, y = np.asarray(pairs, dtype=float).T
    terms = metric_terms("mse", p, y)
    ok = np.isfinite(y)
    assert np.array_equal(np.isfinite(terms), ok)
    if ok.any():
        assert terms[ok].mean() == pytest.approx(np.mean((p[ok] - y[ok]) ** 2), abs=1e-12)


def _err(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        hz.main(list(args))
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "0"], "--seeds"),
        (["--aux", "1,x"], "--aux '1,x': give bar counts"),
        (["--aux", "4,1"], "differ from the main horizon 4"),
        (["--main", "0"], "--main"),
        (["--weightings", "equl"], "equl"),
        (["--weightings", " , "], "names nothing"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    out = tmp_path / "o"
    line = _err(capsys, TINY, "--out", str(out), *args)
    assert message in line
    assert not out.exists()  # refused before any work


def test_bad_config_and_out_are_one_line(tmp_path, capsys):
    assert "nope.toml not found" in _err(capsys, "nope.toml", "--out", str(tmp_path / "o"))
    (tmp_path / "f").write_text("x")
    assert "is a file" in _err(capsys, TINY, "--out", str(tmp_path / "f"))


def test_arms_must_forecast_the_same_bars():
    rows = pd.DataFrame(
        {
            "variant": ["single", "aux_equal", "single", "aux_equal"],
            "seed": 0,
            "symbol": "X",
            "fold": 0,
            "datetime": pd.to_datetime(["2024-01-01"] * 2 + ["2024-01-02"] * 2, utc=True),
            "prediction": [0.1, 0.2, 0.3, 0.4],
            "target": [0.01, 0.01, 0.02, 0.02],
        }
    )
    assert list(hz.arms(rows, "aux_equal")["pos"]) == [0, 0, 1, 1]
    with pytest.raises(RuntimeError, match="did not forecast the same bars"):
        hz.arms(rows.iloc[:3], "aux_equal")  # a bar only one arm forecast
    other = rows.assign(target=[0.01, 0.01, 0.02, 0.03])  # a target that differs
    with pytest.raises(RuntimeError, match="did not forecast the same bars"):
        hz.arms(other, "aux_equal")
    unknown = rows.assign(target=[0.01, 0.01, np.nan, 0.02])  # one arm lacks a target
    with pytest.raises(RuntimeError, match="did not forecast the same bars"):
        hz.arms(unknown, "aux_equal")
    assert len(hz.arms(rows.assign(target=[0.01, 0.01, np.nan, np.nan]), "aux_equal")) == 4
