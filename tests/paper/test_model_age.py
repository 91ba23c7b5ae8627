"""The model-age guard judges the model in use on the bar: after a swap to a fresher model it
lifts (and no ``stale`` event names the old model again); one event per model, also across
a resume (a new Retrainer on the same journal)."""

from __future__ import annotations

import pandas as pd
from paper_testkit import paper_config_dict

from mtl_bt import config as config_mod
from mtl_bt.paper.retrain import ModelInUse, Retrainer
from mtl_bt.paper.state import PaperState

T0 = pd.Timestamp("2024-03-01 00:00", tz="UTC")


class Strategy:
    def __init__(self):
        self.calls = []

    def model_stale(self, stale):
        self.calls.append(stale)


def _retrainer(tmp_path, state, model):
    data = paper_config_dict("http://unused")
    data["paper"]["max_model_age"] = "2d"
    cfg = config_mod.from_dict(data)
    return Retrainer(cfg, tmp_path, state, pd.Timedelta("1h"), model)


def _events(state):
    return state.db.execute(
        "SELECT event, datetime, path, sha256 FROM models WHERE event='stale' ORDER BY seq"
    ).fetchall()


def test_guard_follows_the_model_in_use_and_reports_each_model_once(tmp_path):
    state = PaperState(tmp_path / "paper.sqlite")
    old = ModelInUse("/m/old.pt", "a" * 64, T0 - pd.Timedelta("3d"))
    new = ModelInUse("/m/model_001.pt", "b" * 64, T0 + pd.Timedelta("1h"))
    strat = Strategy()
    r = _retrainer(tmp_path, state, old)
    r.before_bar(strat, T0)
    r.before_bar(strat, T0 + pd.Timedelta("1h"))
    assert strat.calls == [True]  # told once, before the first bar's decision
    assert _events(state) == [("stale", T0.isoformat(), "/m/old.pt", "a" * 64)]
    r.in_use = new  # what a swap does
    r.before_bar(strat, T0 + pd.Timedelta("2h"))
    assert strat.calls == [True, False]
    assert len(_events(state)) == 1  # nothing names the old model after the swap
    r.before_bar(strat, T0 + pd.Timedelta("2d 3h"))  # the new one ages too
    assert strat.calls == [True, False, True]
    assert [e[2] for e in _events(state)] == ["/m/old.pt", "/m/model_001.pt"]
    # a resumed run (a new Retrainer on the same journal) tells the strategy again, but
    # journals no second event for a model already reported
    strat2 = Strategy()
    again = _retrainer(tmp_path, state, new)
    again.before_bar(strat2, T0 + pd.Timedelta("2d 4h"))
    assert strat2.calls == [True] and len(_events(state)) == 2
    state.close()


def test_resume_compares_settings_both_versions_know_and_options_whole():
    from mtl_bt.paper.settings import differences

    old = {"backtest": {"cash": 1.0}, "data": {"options": {"exchange": "bybit"}}}
    new = {
        "backtest": {"cash": 1.0, "added_in_a_newer_mtl_bt": 3},
        "data": {"options": {"exchange": "bybit", "market": "linear"}},
    }
    assert differences(old, new) == [
        "data.options ({'exchange': 'bybit'} -> {'exchange': 'bybit', 'market': 'linear'})"
    ]
    new["backtest"]["cash"] = 2.0
    assert differences(old, new)[0] == "backtest.cash (1.0 -> 2.0)"
