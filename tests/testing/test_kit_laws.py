"""Each law of the kit fails a small throwaway plugin that breaks it, naming where."""

from __future__ import annotations

import pytest

from mtl_bt.testing import (
    ConformanceError,
    check_architecture,
    check_feature,
    check_signal,
    check_task,
    check_weighting,
)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("peek", r"looks ahead: prefix invariance: column 'peek' first differs at bar \d+"),
        ("centred", r"looks ahead: prefix invariance: column 'centred' first differs at bar"),
        ("anchored", r"column 'anchored' depends on where the history starts and never settles"),
        ("short_declared", r"not finite after its declared warm-up 5"),
    ],
)
def test_bad_features_fail_naming_the_column(bad_plugins, name, message):
    with pytest.raises(ConformanceError, match=rf"feature '{name}': {message}"):
        check_feature(name)


def test_a_correct_feature_passes_every_law(bad_plugins, sample_frame):
    report = check_feature("good_sma", sample_frame)
    assert "perturbed future leaves the past unchanged" in report.laws
    assert report.details["warmup"]["measured"] == {"good_sma": 19}


def test_a_peek_is_found_on_real_data_too(bad_plugins, sample_frame):
    with pytest.raises(ConformanceError, match="'peek'"):
        check_feature("peek", sample_frame)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("past_return", "target uses bars before t-lookback"),
        ("too_far", r"target uses bars beyond t\+h"),
    ],
)
def test_bad_tasks_fail(bad_plugins, name, message):
    with pytest.raises(ConformanceError, match=message):
        check_task(name, horizon=3)


def test_a_correct_task_passes(bad_plugins):
    assert (
        "uses bars t-lookback..t+h only and looks h bars ahead"
        in check_task("good_return", horizon=3).laws
    )


def test_architecture_that_forgets_a_head_is_named(bad_plugins):
    with pytest.raises(ConformanceError, match=r"no head for task\(s\) \['volatility@5'\]"):
        check_architecture("forgets_head")


def test_heads_outside_a_heads_dict_are_found(bad_plugins):
    """The docs' TwoTower keeps heads in `towers`: output_layer finds them (head-bias
    initialisation is not skipped)."""
    report = check_architecture("two_tower")
    assert "output layer of every head (head-bias initialisation)" in report.laws


def test_weighting_with_nan_combined_loss_is_named_with_the_step(bad_plugins):
    with pytest.raises(ConformanceError, match=r"'nan_weighting': combined loss is nan at step 0"):
        check_weighting("nan_weighting")


def test_weighting_whose_reset_forgets_state(bad_plugins):
    with pytest.raises(ConformanceError, match=r"reset\(\) gives weights"):
        check_weighting("drifting")


@pytest.mark.parametrize(
    ("name", "limit"),
    [("sums_to_five", "max_weight=0.5"), ("always_short", "allow_short=False")],
)
def test_signal_rules_breaking_limits(bad_plugins, name, limit):
    with pytest.raises(ConformanceError, match=limit):
        check_signal(name)


def test_source_with_1970_timestamps_is_refused(bad_plugins):
    from mtl_bt.testing import check_source

    with pytest.raises(
        ConformanceError, match=r"'epoch_mixup': X: timestamps 1970-01-\d\d.*implausible"
    ):
        check_source("epoch_mixup", ["X"], timeframe="1h")


def test_conformance_error_is_a_user_error_and_an_assertion():
    from mtl_bt.errors import UserError

    assert issubclass(ConformanceError, UserError)
    assert issubclass(ConformanceError, AssertionError)
