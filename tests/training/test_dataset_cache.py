"""The per-process dataset cache (compare's fold jobs) gives exactly what a fresh build gives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from mtl_bt.training import build_components, build_dataset, single_task, train_walk_forward
from mtl_bt.training import dataset as dataset_mod
from mtl_bt.training.dataset import cached_dataset, frames_digest

from .conftest import synthetic_frames, tiny_config


def _equal(a, b) -> None:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        elif isinstance(x, pd.Index):
            assert x.equals(y), f.name
        else:
            assert x == y, f.name


def test_cached_dataset_equals_a_fresh_build_and_is_reused():
    dataset_mod._CACHE.clear()
    cfg, frames = tiny_config(), synthetic_frames()
    comp = build_components(cfg)
    first = cached_dataset(frames, comp.feature_spec, comp.tasks, comp.lookback)
    _equal(first, build_dataset(frames, comp.feature_spec, comp.tasks, comp.lookback))
    # the same data in new objects hits the cache
    again = cached_dataset(synthetic_frames(), comp.feature_spec, comp.tasks, comp.lookback)
    assert again is first


def test_other_data_or_tasks_miss_the_cache():
    dataset_mod._CACHE.clear()
    cfg, frames = tiny_config(), synthetic_frames()
    comp = build_components(cfg)
    first = cached_dataset(frames, comp.feature_spec, comp.tasks, comp.lookback)
    moved = {s: f.copy() for s, f in frames.items()}
    symbol = next(iter(moved))
    moved[symbol].iloc[300, moved[symbol].columns.get_loc("close")] *= 1.01
    assert frames_digest(moved) != frames_digest(frames)
    other = cached_dataset(moved, comp.feature_spec, comp.tasks, comp.lookback)
    assert other is not first
    _equal(other, build_dataset(moved, comp.feature_spec, comp.tasks, comp.lookback))
    st = build_components(single_task(cfg))
    only_return = cached_dataset(frames, st.feature_spec, st.tasks, st.lookback)
    assert only_return.task_names != first.task_names
    assert len(dataset_mod._CACHE) <= dataset_mod._CACHE_SIZE


def test_train_walk_forward_with_reuse_dataset_gives_identical_predictions(tmp_path):
    dataset_mod._CACHE.clear()
    cfg, frames = tiny_config(), synthetic_frames()
    plain = train_walk_forward(cfg, frames, out_dir=tmp_path / "a", folds=[0])
    reused = [
        train_walk_forward(cfg, frames, out_dir=tmp_path / f"r{k}", folds=[0], reuse_dataset=True)
        for k in range(2)
    ]
    assert len(dataset_mod._CACHE) == 1
    for result in reused:
        pd.testing.assert_frame_equal(result.predictions, plain.predictions)


def test_task_sets_share_the_features_and_equal_fresh_builds():
    """The single-task models' datasets reuse the MTL model's features (computed once per
    process) and are exactly what a fresh build gives."""
    dataset_mod._CACHE.clear()
    dataset_mod._FEATURES.clear()
    cfg, frames = tiny_config(), synthetic_frames()
    comp = build_components(cfg)
    cached_dataset(frames, comp.feature_spec, comp.tasks, comp.lookback)
    assert len(dataset_mod._FEATURES) == 1
    shared = next(iter(dataset_mod._FEATURES.values()))
    for task in cfg.task_names():
        st = build_components(single_task(cfg, task))
        ds = cached_dataset(frames, st.feature_spec, st.tasks, st.lookback)
        _equal(ds, build_dataset(frames, st.feature_spec, st.tasks, st.lookback))
    assert len(dataset_mod._FEATURES) == 1 and next(iter(dataset_mod._FEATURES.values())) is shared


def test_fold_numbers_with_shared_features_are_the_trained_folds():
    from mtl_bt.training.pipeline import fold_numbers

    dataset_mod._FEATURES.clear()
    cfg, frames = tiny_config(), synthetic_frames()
    for config in (cfg, single_task(cfg)):
        folds = fold_numbers(config, frames)
        assert folds == [f["fold"] for f in train_walk_forward(config, frames).folds]
    assert len(dataset_mod._FEATURES) == 1
