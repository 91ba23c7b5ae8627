"""Walk-forward pipeline on synthetic bars: determinism, train-only scaler, OOS, files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mtl_bt import checkpoint as ckpt
from mtl_bt import registry
from mtl_bt.errors import CheckpointError, ConfigError, DataError
from mtl_bt.predictor import Predictor
from mtl_bt.training import build_components, build_dataset, single_task, train_walk_forward
from mtl_bt.training.pipeline import prepare_fold
from mtl_bt.training.splits import walk_forward_splits

from .conftest import synthetic_frames, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = tiny_config()
    return cfg, synthetic_frames(), train_walk_forward(cfg, synthetic_frames(), out_dir=out), out


def _dataset(cfg, frames):
    comp = build_components(cfg)
    return build_dataset(frames, comp.feature_spec, comp.tasks, comp.lookback)


def _splits(cfg, ds):
    wf = cfg.walk_forward
    return walk_forward_splits(
        len(ds.axis),
        train_bars=wf.train_bars,
        test_bars=wf.test_bars,
        purge=ds.horizon,
        val_fraction=cfg.training.val_fraction,
        max_folds=wf.max_folds,
    )


def test_files_and_log_columns(run):
    cfg, _, result, out = run
    names = cfg.task_names()
    assert names == ["return@1", "volatility@4"]
    expected = (
        ["fold", "epoch"]
        + [f"loss_{n}" for n in names]
        + [f"weight_{n}" for n in names]
        + [f"val_loss_{n}" for n in names]
        + ["reg_loss", "total"]
    )
    log = pd.read_csv(out / "train_log.csv")
    assert list(log.columns[: len(expected)]) == expected
    assert len(log) == len(result.train_log) and set(log["fold"]) == {0, 1}
    assert (log.groupby("fold")["epoch"].apply(lambda e: list(e) == list(range(len(e))))).all()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["fold_000.pt", "fold_001.pt"]
    pred = pd.read_parquet(out / "predictions.parquet")
    assert list(pred.columns) == [
        "datetime",
        "symbol",
        "fold",
        *names,
        *[f"target_{n}" for n in names],
    ]
    assert str(pred["datetime"].dtype) == "datetime64[ns, UTC]" or "UTC" in str(
        pred["datetime"].dtype
    )
    assert (pred["volatility@4"] > 0).all()  # transformed output, not log vol
    metrics = pd.read_csv(out / "fold_metrics.csv")
    assert {"ic", "rmse", "corr", "rmse_log"} <= set(metrics["metric"])
    folds = json.loads((out / "folds.json").read_text())
    assert [f["fold"] for f in folds["folds"]] == [0, 1]
    assert folds["summary"]["warmup_rows_dropped"] == {"AAA": 42, "BBB": 42}
    assert (out / "config.toml").read_text().count("[training]") == 1
    assert not [p for p in out.rglob("*.tmp")]


def test_predictions_are_out_of_sample(run):
    cfg, frames, result, _ = run
    pred = result.predictions
    ds = _dataset(cfg, frames)
    axis_pos = {t: i for i, t in enumerate(ds.axis)}
    for meta in result.folds:
        rows = pred[pred["fold"] == meta["fold"]]
        assert len(rows) == meta["n_test"] > 0
        t = rows["datetime"]
        assert t.min() >= pd.Timestamp(meta["test_start"]) and t.max() <= pd.Timestamp(
            meta["test_end"]
        )
        first = axis_pos[pd.Timestamp(meta["test_start"])]
        last_train = axis_pos[pd.Timestamp(meta["train_end"])]
        assert first - last_train > meta["purge"]  # purge bars lie strictly between
    # each (datetime, symbol) predicted once, by one fold
    assert not pred.duplicated(["datetime", "symbol"]).any()
    assert pred["datetime"].is_monotonic_increasing


def test_same_seed_same_weights_other_seed_differs(run, tmp_path):
    cfg, frames, result, out = run
    again = train_walk_forward(cfg, frames, out_dir=tmp_path)
    a = ckpt.load(out / "checkpoints" / "fold_001.pt").state_dict
    b = ckpt.load(tmp_path / "checkpoints" / "fold_001.pt").state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(result.predictions, again.predictions)
    other = train_walk_forward(
        cfg.model_copy(update={"training": cfg.training.model_copy(update={"seed": 7})}), frames
    )
    c = other.predictions
    assert not np.allclose(c["return@1"], result.predictions["return@1"])


def test_scaler_is_fitted_on_the_training_slice_only():
    cfg = tiny_config()
    frames = synthetic_frames()
    ds = _dataset(cfg, frames)
    split = _splits(cfg, ds)[0]
    fd = prepare_fold(ds, split, "standard")
    x = ds.features[fd.fit_rows].astype(np.float64)
    np.testing.assert_allclose(fd.scaler.center_, x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(fd.scaler.scale_, x.std(axis=0), rtol=1e-6)
    # every train-proper row lies before the validation slice, with its target window
    assert (ds.pos[fd.fit_rows] < split.fit_end).all()
    assert (ds.label_end[fd.fit_rows] < split.val_start).all()
    assert (ds.label_end[fd.val_rows] < split.test_start).all()
    # wreck the bars from the validation slice on: the scaler must not move
    cut = ds.axis[split.val_start]
    wrecked = {}
    for s, f in frames.items():
        g = f.copy()
        late = g.index >= cut
        g.loc[late, ["open", "high", "low", "close"]] *= np.linspace(1, 5, late.sum())[:, None]
        g.loc[late, "volume"] *= 100
        wrecked[s] = g
    ds2 = _dataset(cfg, wrecked)
    fd2 = prepare_fold(ds2, _splits(cfg, ds2)[0], "standard")
    np.testing.assert_array_equal(fd2.fit_rows, fd.fit_rows)
    np.testing.assert_array_equal(fd2.scaler.center_, fd.scaler.center_)
    np.testing.assert_array_equal(fd2.scaler.scale_, fd.scaler.scale_)
    assert not np.allclose(
        ds2.features[fd.test_rows], ds.features[fd.test_rows]
    )  # test rows changed


def test_checkpoint_predictor_round_trip(run):
    cfg, frames, result, out = run
    predictor = Predictor.from_checkpoint(out / "checkpoints" / "fold_001.pt")
    in_memory = Predictor.from_checkpoint(result.models[1])  # same model without the file
    assert in_memory.fold == predictor.fold
    assert predictor.task_names == cfg.task_names()
    assert predictor.horizons == {"return@1": 1, "volatility@4": 4}
    assert predictor.symbols == ["AAA", "BBB"] and predictor.lookback == 1
    assert predictor.fold["fold"] == 1
    feats = {s: predictor.features(f) for s, f in frames.items()}
    table = predictor.predict_frame(feats)
    oos = result.predictions[result.predictions["fold"] == 1]
    merged = oos.merge(table, on=["datetime", "symbol"], suffixes=("", "_re"))
    assert len(merged) == len(oos)
    for name in predictor.task_names:
        # the numpy forward pass (scaler folded into the first layer) equals torch to 1e-6
        np.testing.assert_allclose(merged[name], merged[f"{name}_re"], rtol=1e-5, atol=1e-6)
    # the per-bar path: one row per asset at one timestamp
    ts = oos["datetime"].iloc[-1]
    x = np.stack([feats[s].loc[ts].to_numpy() for s in predictor.symbols])
    got = predictor.predict(x, predictor.asset_ids(predictor.symbols))
    want = oos[oos["datetime"] == ts].set_index("symbol").loc[predictor.symbols]
    np.testing.assert_allclose(got["return@1"], want["return@1"], rtol=1e-5, atol=1e-7)
    again = in_memory.predict(x, predictor.asset_ids(predictor.symbols))
    np.testing.assert_array_equal(again["volatility@4"], got["volatility@4"])
    with pytest.raises(ValueError, match="shape"):
        predictor.predict(x[:, :3])
    ckpt.check_compatible(
        predictor.checkpoint, list(feats["AAA"].columns), cfg.task_names(), x.shape[1]
    )


@pytest.mark.parametrize("edit", ["spec", "columns", "scaler"])
def test_inconsistent_checkpoint_is_refused_on_load(run, tmp_path, edit):
    """An edited or mixed-up file fails at load, naming the file, not later mid-backtest."""
    out = run[3]
    good = ckpt.load(out / "checkpoints" / "fold_001.pt")
    payload = good.to_payload()
    if edit == "spec":  # the spec no longer computes a saved column
        params = payload["feature_spec"]["params"]
        name = next(k for k, v in params.items() if "windows" in v)
        params[name]["windows"] = [2, 3]
    elif edit == "columns":  # one column more than the scaler and the model take
        payload["feature_columns"] = [*payload["feature_columns"], payload["feature_columns"][0]]
    else:  # a scaler from a run with fewer features
        payload["scaler"]["center"] = payload["scaler"]["center"][:-1]
        payload["scaler"]["scale"] = payload["scaler"]["scale"][:-1]
    path = tmp_path / f"{edit}.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} is inconsistent"):
        Predictor.from_checkpoint(path)
    Predictor.from_checkpoint(out / "checkpoints" / "fold_001.pt")  # the original loads


def test_single_task_baseline(run):
    cfg = tiny_config(weighting={"name": "fixed", "options": {"weights": {"return@1": 1.0}}})
    one = single_task(cfg, "volatility")
    assert one.task_names() == ["volatility@4"] and one.weighting.name == "equal"
    assert single_task(cfg, "return@1").task_names() == ["return@1"]
    with pytest.raises(ConfigError, match="direction"):
        single_task(cfg, "direction")
    res = train_walk_forward(one, synthetic_frames(), progress=False)
    assert [c for c in res.predictions.columns if "@" in c] == [
        "volatility@4",
        "target_volatility@4",
    ]


def test_too_little_history_is_a_clear_error():
    cfg = tiny_config()
    with pytest.raises(DataError, match=r"need \d+ bars .*found \d+"):
        train_walk_forward(cfg, synthetic_frames(n=300))


def test_plugin_options_are_validated_before_data():
    with pytest.raises(ConfigError, match="uncertainty|unknown option"):
        build_components(tiny_config(weighting={"name": "uncertainty", "options": {"bogus": 1}}))
    with pytest.raises(ConfigError, match="bogus"):
        build_components(tiny_config(tasks=[{"name": "return", "options": {"bogus": 1}}]))
    with pytest.raises(ConfigError, match="bogus"):
        build_components(tiny_config(features={"params": {"rsi": {"bogus": 1}}, "names": ["rsi"]}))
    with pytest.raises(ConfigError, match="bogus"):
        build_components(tiny_config(model={"options": {"bogus": 1}}))


@pytest.mark.parametrize("weighting", registry.names("weighting"))
def test_every_weighting_trains_through_the_pipeline(weighting):
    options = {
        "fixed": {"weights": {"return@1": 1.0, "volatility@4": 0.5}},
        "curriculum": {"schedule": {"volatility@4": {"start": 0}, "return@1": {"start": 1}}},
    }.get(weighting, {})
    cfg = tiny_config(
        weighting={"name": weighting, "options": options},
        training={"epochs": 2, "batch_size": 128},
        walk_forward={"train_bars": 300, "test_bars": 100, "max_folds": 1},
    )
    res = train_walk_forward(cfg, synthetic_frames(n=500))
    log = res.train_log
    assert len(log) == 2
    for name in cfg.task_names():
        assert np.isfinite(log[f"weight_{name}"]).all() and np.isfinite(log[f"loss_{name}"]).all()
    assert np.isfinite(res.predictions[cfg.task_names()].to_numpy()).all()


def test_sequence_encoder_with_asset_embedding_round_trips(tmp_path):
    cfg = tiny_config(
        model={"sequence": {"encoder": "gru", "lookback": 6, "hidden": 8}, "asset_embedding": 2},
        training={"epochs": 2},
        walk_forward={"max_folds": 1},
    )
    frames = synthetic_frames()
    res = train_walk_forward(cfg, frames, out_dir=tmp_path)
    assert res.summary["lookback"] == 6
    assert res.summary["rows_without_full_lookback"] == {"AAA": 5, "BBB": 5}
    p = Predictor.from_checkpoint(res.checkpoints[0])
    assert p.lookback == 6
    table = p.predict_frame({s: p.features(f) for s, f in frames.items()})
    warm = res.summary["warmup_rows_dropped"]["AAA"]
    assert table["return@1"].isna().sum() == 2 * (warm + 5)  # warm-up + incomplete windows
    merged = res.predictions.merge(table, on=["datetime", "symbol"], suffixes=("", "_re"))
    assert len(merged) == len(res.predictions)
    np.testing.assert_allclose(merged["volatility@4"], merged["volatility@4_re"], rtol=1e-5)
    with pytest.raises(CheckpointError, match="ZZZ"):
        p.asset_ids(["AAA", "ZZZ"])
    with pytest.raises(CheckpointError, match="ZZZ"):  # an embedding needs known symbols
        p.predict_frame({"ZZZ": p.features(frames["AAA"])})
