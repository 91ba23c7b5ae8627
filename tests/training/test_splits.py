"""Walk-forward splits: purge, embargo, disjoint increasing test windows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.errors import ConfigError, DataError
from mtl_bt.training.splits import walk_forward_splits


@st.composite
def split_args(draw):
    purge = draw(st.integers(1, 20))
    embargo = draw(st.integers(0, 10))
    train = draw(st.integers(purge + 5, 300))
    test = draw(st.integers(1, 80))
    step = test + draw(st.integers(0, 30))
    val_fraction = draw(st.floats(0.05, 0.45))
    scheme = draw(st.sampled_from(["expanding", "rolling"]))
    n = draw(st.integers(train + purge + embargo + test, train + purge + embargo + test + 1500))
    return dict(
        n_bars=n,
        train_bars=train,
        test_bars=test,
        step_bars=step,
        purge=purge,
        embargo=embargo,
        val_fraction=val_fraction,
        scheme=scheme,
    )


def _safe_args(args):
    # val slice + purge must leave a train-proper slice
    import math

    val = max(1, math.ceil(args["val_fraction"] * args["train_bars"]))
    return args["train_bars"] - val - args["purge"] >= 1


@given(split_args())
def test_no_target_window_reaches_validation_or_test(args):
    if not _safe_args(args):
        with pytest.raises(ConfigError, match="train_bars"):
            walk_forward_splits(**args)
        return
    h = args["purge"]
    splits = walk_forward_splits(**args)
    assert splits, "at least one fold when n_bars covers one fold"
    for s in splits:
        train_rows = list(s.fit) + list(s.val)
        test = set(s.test)
        for t in train_rows:  # target of row t uses bars t+1..t+h
            assert not test & set(range(t + 1, t + h + 1)), (s, t)
        for t in s.fit:  # train-proper targets never reach into validation
            assert t + h < s.val_start
        assert len(s.fit) >= 1 and len(s.val) >= 1 and len(s.test) >= 1
        # every test bar is after train window + purge + embargo
        assert s.test_start >= s.train_end + h + args["embargo"]
        assert s.test_end <= args["n_bars"]


@given(split_args())
def test_test_windows_disjoint_increasing_and_cover_the_tail(args):
    if not _safe_args(args):
        return
    splits = walk_forward_splits(**args)
    for a, b in zip(splits, splits[1:], strict=False):
        assert a.test_end <= b.test_start
        assert b.test_start - a.test_start == args["step_bars"]
        assert b.train_end > a.train_end
        if args["scheme"] == "expanding":
            assert b.train_start == 0
        else:
            assert b.train_end - b.train_start == args["train_bars"]
    assert splits[0].train_end - splits[0].train_start == args["train_bars"]
    # the next fold would start past the data: nothing left unpredicted at the end
    last = splits[-1]
    assert last.test_start + args["step_bars"] >= args["n_bars"]
    assert [s.fold for s in splits] == list(range(len(splits)))


def test_layout_by_hand():
    (s0, s1, s2) = walk_forward_splits(
        130, train_bars=50, test_bars=20, purge=5, embargo=2, val_fraction=0.2
    )[:3]
    assert (s0.train_start, s0.fit_end, s0.val_start, s0.train_end) == (0, 35, 40, 50)
    assert (s0.test_start, s0.test_end) == (57, 77)
    assert (s1.train_end, s1.test_start, s1.test_end) == (70, 77, 97)
    assert s1.val_start == 70 - 14 and s1.fit_end == 70 - 14 - 5
    assert s2.test_start == 97


def test_last_fold_may_be_short_and_max_folds():
    splits = walk_forward_splits(100, train_bars=40, test_bars=25, purge=3, val_fraction=0.2)
    assert [(s.test_start, s.test_end) for s in splits] == [(43, 68), (68, 93), (93, 100)]
    assert len(walk_forward_splits(100, train_bars=40, test_bars=25, purge=3, max_folds=2)) == 2


def test_too_little_history_names_counts():
    with pytest.raises(DataError) as err:
        walk_forward_splits(60, train_bars=50, test_bars=20, purge=5, embargo=1, warmup=30)
    msg = str(err.value)
    assert "need 106 bars" in msg and "found 90" in msg and "warm-up 30" in msg


def test_overlapping_test_windows_refused():
    with pytest.raises(ConfigError, match="step_bars"):
        walk_forward_splits(500, train_bars=50, test_bars=20, step_bars=10, purge=1)
