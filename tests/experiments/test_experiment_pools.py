"""The experiments' machinery on tiny synthetic data: a pool's model never sees rows of a
symbol outside the pool, every arm forecasts the same bars on the same folds, the per-bar
terms average to the task's own metric, and the table has one row per task and scope."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_bt import config as config_mod
from mtl_bt.experiments import common, pooling, transfer
from mtl_bt.experiments.common import Pool

from .conftest import SYMBOLS, _base, _frames, write_data


def _config(task: str = "volatility@3"):
    return common.single_task_config(_base(), task, 0, asset_embedding=0)


def test_a_pool_trains_without_the_held_out_symbol():
    """Changing every bar of CCC leaves the model of the pool {AAA, BBB} (weights, hence its
    forecasts of AAA) unchanged, while a model whose pool holds CCC changes: CCC's rows
    and its scaler statistics stay out of a pool that excludes it."""
    pools = [Pool("pooled", ("AAA", "BBB"), ("AAA",)), Pool("own", ("CCC",), ("CCC",))]
    before = common.train_pools(_config(), _frames(), pools, keep_models=True)
    after = common.train_pools(_config(), _frames(scale_ccc=3.0), pools, keep_models=True)
    folds = sorted({fold for fold, _ in before.models})
    assert len(folds) == 2
    for fold in folds:
        for name, tensor in before.models[(fold, 0)].items():
            assert after.models[(fold, 0)][name].equal(tensor), (fold, name)
        changed = any(
            not after.models[(fold, 1)][n].equal(t) for n, t in before.models[(fold, 1)].items()
        )
        assert changed  # the perturbation reaches a model that trains on CCC
    a = before.predictions.query("arm == 'pooled'")["prediction"].to_numpy()
    b = after.predictions.query("arm == 'pooled'")["prediction"].to_numpy()
    assert np.array_equal(a, b)


def test_restrict_keeps_the_axis_and_only_the_pool_rows():
    from mtl_bt.training import build_components
    from mtl_bt.training.dataset import build_dataset

    comp = build_components(_config())
    ds = build_dataset(_frames(), comp.feature_spec, comp.tasks, comp.lookback)
    sub = common.restrict(ds, ["BBB"])
    assert sub.axis is ds.axis
    assert set(sub.asset[sub.samples]) == {ds.symbols.index("BBB")}
    assert len(sub.samples) == int((ds.asset[ds.samples] == ds.symbols.index("BBB")).sum())


@pytest.mark.parametrize("metric,task", [("qlike", "volatility"), ("rank_ic", "return")])
def test_terms_average_to_the_task_metric(metric, task):
    """The mean of the per-bar terms is the task's own metric (ties in ranks included)."""
    from mtl_bt.tasks import build_tasks

    (t,) = build_tasks([config_mod.TaskConfig(name=task, horizons=[1])])
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = np.abs(rng.normal(0.02, 0.01, 300))
        p = np.round(np.abs(y + rng.normal(0, 0.01, 300)), 3)  # rounding makes ties
        p[:7] = np.nan
        floor = t.spec.options.get("floor")
        terms = common.metric_terms(metric, p, y, floor)
        assert np.nanmean(terms) == pytest.approx(t.metrics(p, y)[metric], rel=1e-9, abs=1e-12)
        assert np.isnan(terms[:7]).all()


def test_transfer_table_pairs_every_seed_symbol_and_fold(tmp_path):
    base = _base(epochs=1)
    base = base.model_copy(update={"data": config_mod.DataConfig(**write_data(tmp_path / "d"))})
    out = tmp_path / "out"
    out.mkdir()
    text = common.run_design(transfer.DESIGN, base, [0, 1], out, lambda _m: None)
    table, preds = pd.read_csv(out / "table.csv"), pd.read_parquet(out / "predictions.parquet")
    assert list(table["symbol"]) == ["all", *SYMBOLS, "all", *SYMBOLS]
    assert list(table["task"].unique()) == ["volatility@3", "return@2"]
    assert set(table["metric"]) == {"qlike", "rank_ic"}
    all_rows = table[table["symbol"] == "all"]
    assert (all_rows["cells"] == 2 * 3 * 2).all()  # seeds x symbols x folds
    assert (table[table["symbol"] != "all"]["cells"] == 2 * 2).all()
    assert table["low"].le(table["diff"]).all() and table["diff"].le(table["high"]).all()
    assert "| task | metric | symbol | pooled | own | diff |" in text
    # both arms forecast exactly the same bars of each symbol, from the same folds
    keys = ["seed", "task", "symbol", "fold", "pos"]
    arms = {arm: part[keys].sort_values(keys).to_numpy() for arm, part in preds.groupby("arm")}
    assert set(arms) == {"pooled", "own"}
    assert np.array_equal(arms["pooled"], arms["own"])
    assert not preds.duplicated(["arm", *keys]).any()
    # the diff is pooled - own of the row-weighted cell metrics
    cells = pd.read_csv(out / "cells.csv")
    vol = cells[cells["task"] == "volatility@3"]
    want = np.average(vol["diff"], weights=vol["n"])
    assert all_rows.iloc[0]["diff"] == pytest.approx(want, rel=1e-9)


def test_pooling_pools_one_model_for_all_and_one_per_symbol():
    pools = pooling.pooled_pools(list(SYMBOLS))
    assert pools[0] == Pool("pooled", SYMBOLS, SYMBOLS)
    assert pools[1:] == [Pool("own", (s,), (s,)) for s in SYMBOLS]
    loao = transfer.loao_pools(list(SYMBOLS))
    assert Pool("pooled", ("AAA", "CCC"), ("BBB",)) in loao
    assert all(p.predict[0] not in p.train for p in loao if p.arm == "pooled")


def test_transfer_refuses_features_that_read_other_symbols():
    from mtl_bt.errors import ConfigError

    base = _base().model_copy(deep=True)
    features = base.features.model_copy(update={"names": ["log_return", "market"]})
    base = base.model_copy(update={"features": features})
    with pytest.raises(ConfigError, match="read other symbols"):
        common.check(transfer.DESIGN, base)
    common.check(pooling.DESIGN, base)  # pooling: both arms see the same features


def test_a_symbol_without_bars_in_a_training_window_is_skipped_not_fatal():
    """Like FB in the stocks sample (bars from 2012 on): its own model cannot train in the
    first fold, so that fold's model is skipped and said so; later folds train."""
    frames = _frames()
    frames["CCC"] = frames["CCC"].iloc[330:]
    pools = [Pool("own", ("CCC",), ("CCC",)), Pool("pooled", ("AAA", "BBB"), ("CCC",))]
    run = common.train_pools(_config(), frames, pools)
    assert run.skipped == [f"fold 0 own CCC: {common.NO_ROWS}"]
    own = run.predictions.query("arm == 'own'")
    assert set(own["fold"]) == {1}
    assert set(run.predictions.query("arm == 'pooled'")["fold"]) == {0, 1}


def test_a_zero_bootstrap_p_value_prints_as_below_its_resolution():
    row = {"task": "t", "p": 0.0, "p_holm": 0.0, "cells_a_better": 1.0, "diff": 0.5}
    text = common.markdown(pd.DataFrame([row, {**row, "p": 0.25, "p_holm": 0.5}]))
    assert "| <0.001 | <0.001 |" in text and "| 0.25 | 0.5 |" in text
