"""The multi-horizon experiment (TCTS's claim): variants, pairing, the seed x time interval and
the command's one-line errors, on a tiny real config (two bundled crypto pairs, 1 epoch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.cli.configs import load_config
from mtl_bt.experiments import horizons as hz
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
    tests = hz.run(base, setup, seeds=[0, 1], out=out, workers=1, n_boot=200)
    return out, setup, tests


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
    out, setup, tests = experiment
    symbols = ["BTC/USDT", "ETH/USDT"]
    assert len(tests) == 2 * (1 + len(symbols))  # (rank IC, MSE) x (pooled, each asset)
    assert set(tests["scope"]) == {"all assets", *symbols}
    assert (tests["n_seeds"] == 2).all() and (tests["seeds_better"] <= 2).all()
    assert (tests["p_holm"] >= tests["p"] - 1e-12).all()
    assert ((tests["ci_low"] <= tests["diff"]) & (tests["diff"] <= tests["ci_high"])).all()
    mse = tests[tests["metric"] == "mse"]
    assert (mse["zero_forecast"] > 0).all() and tests.loc[
        tests["metric"] == "rank_ic", "zero_forecast"
    ].isna().all()
    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) == 2 * len(symbols) * 2  # seeds x assets x folds
    # every cell pairs the same rows: the pooled means are the row-weighted cell means
    for metric in ("rank_ic", "mse"):
        row = tests[(tests["metric"] == metric) & (tests["scope"] == "all assets")].iloc[0]
        w = cells["n"] / cells["n"].sum() * 2  # 2 seeds
        assert row["diff"] == pytest.approx((cells[f"d_{metric}"] * w).sum() / 2, rel=1e-9)
    assert (out / "tests.md").read_text().count("\n| aux_equal - single |") == len(tests)


def test_cell_rank_ic_and_mse_match_the_run_metrics(experiment):
    """The per-cell numbers are the trainer's own fold metrics (same function, same rows)."""
    out, setup, _ = experiment
    cells = pd.read_csv(out / "cells.csv")
    fold_dir = hz.job_dir(out, "single", 1, int(cells["fold"].iloc[0]))
    pred = pd.read_parquet(fold_dir / "predictions.parquet")
    task = setup.main_task
    for symbol, part in pred.groupby("symbol"):
        ok = np.isfinite(part[f"target_{task}"])
        p, y = part[task][ok].to_numpy(), part[f"target_{task}"][ok].to_numpy()
        cell = cells[
            (cells["seed"] == 1)
            & (cells["symbol"] == symbol)
            & (cells["fold"] == part["fold"].iloc[0])
        ].iloc[0]
        assert cell["rank_ic_single"] == pytest.approx(rank_ic(p, y), abs=1e-12)
        assert cell["mse_single"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
        assert cell["n"] == ok.sum()


@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(-3, 3), st.integers(-3, 3)),
        min_size=3,
        max_size=40,
    )
)
def test_contribution_means_are_the_rank_ic(values):
    """Law: the mean of the standardised-rank products over a cell is its Spearman rank IC
    (ties averaged), so the bar-level bootstrap resamples exactly the reported statistic."""
    arr = np.asarray(values, dtype=float)
    both = pd.DataFrame(
        {
            "seed": 0,
            "symbol": "X",
            "fold": 0,
            "datetime": pd.date_range("2024", periods=len(arr), freq="h"),
            "pred_a": arr[:, 0],
            "pred_b": arr[:, 1],
            "target": arr[:, 2],
        }
    )
    got = hz.contributions(both)
    for side in ("a", "b"):
        want = rank_ic(both[f"pred_{side}"].to_numpy(), both["target"].to_numpy())
        expected = 0.0 if not np.isfinite(want) else want  # a constant side has no ranking
        assert got[f"u_{side}"].mean() == pytest.approx(expected, abs=1e-9)


def test_seed_time_interval():
    rng = np.random.default_rng(0)
    counts = np.full(300, 2.0)
    noise = rng.normal(size=(5, 300))
    flat = hz.seed_time_mean_ci(np.full((5, 300), 0.6), counts, block=10, n_boot=300)
    assert (flat.estimate, flat.low, flat.high, flat.p_value) == pytest.approx((0.3, 0.3, 0.3, 0.0))
    up = hz.seed_time_mean_ci(noise + 2.0, counts, block=10, n_boot=500)
    assert (
        up.estimate == pytest.approx((noise + 2.0).mean() / 2) and up.low > 0 and up.p_value < 0.01
    )
    zero = hz.seed_time_mean_ci(noise, counts, block=10, n_boot=500)
    assert zero.low < 0 < zero.high and zero.p_value > 0.05
    # seed variance widens the interval: one seed far off moves the replicates
    spread = noise.copy()
    spread[0] += 5.0
    wide = hz.seed_time_mean_ci(spread, counts, block=10, n_boot=500)
    assert wide.high - wide.low > 3 * (zero.high - zero.low)


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
