"""Run report: plots, report.md and a self-contained report.html from artefact files."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl_bt.data.synthetic import garch_bars
from mtl_bt.report.oos import oos_metrics, task_metrics
from mtl_bt.report.run_report import write_run_report


def _fake_run(folder: Path) -> None:
    """Artefacts in the documented formats (numbers from a synthetic series, not a model)."""
    bars = garch_bars(600, seed=3, freq="1h")
    rets = bars["close"].pct_change().fillna(0.0)
    idx = bars.index
    rng = np.random.default_rng(0)
    strat = 0.5 * rets + 0.0002
    pd.DataFrame({"datetime": idx, "portfolio_return": strat}).to_csv(
        folder / "returns.csv", index=False
    )
    (folder / "baselines" / "buy_and_hold").mkdir(parents=True)
    pd.DataFrame({"datetime": idx, "portfolio_return": rets}).to_csv(
        folder / "baselines" / "buy_and_hold" / "returns.csv", index=False
    )
    metrics = {
        "portfolio": {
            "sharpe": 1.2345,
            "sortino": 2.5,
            "max_drawdown": 0.1,
            "profit_factor": 1.3,
            "win_rate": 0.55,
            "cagr": 0.2,
            "annual_volatility": 0.3,
            "calmar": 2.0,
            "num_trades": 42,
            "exposure": 0.8,
            "turnover": 12.0,
        },
        "per_asset": {"SYN": {"sharpe": 1.1, "num_trades": 42}},
        "periods_per_year": 8760,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "baselines" / "buy_and_hold" / "metrics.json").write_text(
        json.dumps({"portfolio": {"sharpe": -0.4321}, "periods_per_year": 8760})
    )
    log = pd.DataFrame(
        [
            {
                "fold": f,
                "epoch": e,
                "loss_return@1": 1.0 / (e + 1),
                "weight_return@1": 1 + 0.1 * e,
                "weight_volatility@1": 1 - 0.1 * e,
            }
            for f in range(2)
            for e in range(4)
        ]
    )
    log.to_csv(folder / "train_log.csv", index=False)
    vol = pd.Series(np.abs(rets.to_numpy()) + 1e-4)
    pred = pd.DataFrame(
        {
            "datetime": idx,
            "symbol": "SYN",
            "fold": np.repeat([0, 1], 300),
            "return@1": rets.shift(-1).fillna(0).to_numpy() + rng.normal(0, 0.01, 600),
            "volatility@1": vol.rolling(10, min_periods=1).mean().to_numpy(),
            "target_return@1": rets.shift(-1).to_numpy(),
            "target_volatility@1": vol.shift(-1).to_numpy(),
        }
    )
    pred.to_parquet(folder / "predictions.parquet")
    (folder / "data.json").write_text(
        json.dumps({"symbols": {"SYN": {"first": str(idx[0]), "last": str(idx[-1]), "bars": 600}}})
    )
    (folder / "config.toml").write_text('[model]\narchitecture = "shared_bottom"\n')


def test_report_files_embed_metrics_and_plots(tmp_path: Path) -> None:
    _fake_run(tmp_path)
    written = write_run_report(tmp_path)
    for name in (
        "equity",
        "drawdown",
        "rolling_sharpe",
        "fold_metrics",
        "task_weights",
        "volatility",
    ):
        png = written[name].read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    for text in (md, html):
        assert "1.234" in text and "-0.4321" in text  # strategy and buy & hold Sharpe
        assert "return@1" in text and "SYN" in text and "shared_bottom" in text
    assert "![" in md and "(plots/equity.png)" in md
    # self-contained: every image is an embedded PNG, no external references
    srcs = re.findall(r'src="([^"]+)"', html)
    assert len(srcs) == 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert base64.b64decode(srcs[0].split(",", 1)[1])[:4] == b"\x89PNG"
    oos = pd.read_csv(tmp_path / "oos_metrics.csv")
    assert set(oos["fold"].astype(str)) == {"all", "0", "1"}


def test_report_without_plots_or_html(tmp_path: Path) -> None:
    _fake_run(tmp_path)
    written = write_run_report(tmp_path, plots_on=False, html=False)
    assert set(written) == {"report.md"}
    assert not (tmp_path / "plots").exists() and not (tmp_path / "report.html").exists()


def test_task_metrics_against_references() -> None:
    from scipy import stats

    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    p = 0.3 * y + rng.normal(size=500)
    m = task_metrics("return", p, y)
    assert np.isclose(m["ic"], stats.pearsonr(p, y)[0])
    assert np.isclose(m["rank_ic"], stats.spearmanr(p, y)[0])
    label = (y > 0).astype(float)
    auc = task_metrics("direction", 1 / (1 + np.exp(-p)), label)["auc"]
    pos, neg = p[label == 1], p[label == 0]
    brute = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert np.isclose(auc, brute)
    sigma = np.exp(rng.normal(size=500))
    perfect = task_metrics("volatility", sigma, sigma)
    assert perfect["qlike"] == 0.0
    assert np.isclose(
        task_metrics("volatility", 2 * sigma, sigma)["qlike"], 0.25 - np.log(0.25) - 1
    )


def test_oos_metrics_by_fold_long_format() -> None:
    frame = pd.DataFrame(
        {
            "fold": [0] * 5 + [1] * 5,
            "return@1": np.arange(10.0),
            "target_return@1": np.arange(10.0) ** 2,
        }
    )
    long = oos_metrics(frame)
    assert list(long.columns) == ["fold", "task", "metric", "value"]
    ic0 = long[(long["fold"] == 0) & (long["metric"] == "rank_ic")]["value"].item()
    assert ic0 == pytest.approx(1.0)


def test_every_bar_count_in_the_report_says_which_bars(tmp_path: Path) -> None:
    """The time axis, the loaded bars and the out-of-sample bars differ: each is labelled
    (issue #17: "8694 bars" beside a metrics.json of 5,670 returns)."""
    _fake_run(tmp_path)
    doc = json.loads((tmp_path / "data.json").read_text())
    doc["summary"] = {"bars_on_axis": 8694}
    (tmp_path / "data.json").write_text(json.dumps(doc))
    write_run_report(tmp_path, plots_on=False, html=False)
    text = (tmp_path / "report.md").read_text()
    assert "600 out-of-sample bars (the returns the metrics come from)" in text
    assert "8694 bars on the training time axis after warm-up" in text
    assert "bars: every bar loaded per symbol" in text


def test_the_report_opens_with_a_plain_verdict(tmp_path: Path) -> None:
    from mtl_bt.report.run_report import verdict

    _fake_run(tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    metrics["portfolio"].update(gross_cagr=0.25, gross_sharpe=1.5, cost_drag=0.037)
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    write_run_report(tmp_path, plots_on=False, html=False)
    md = (tmp_path / "report.md").read_text()
    first = next(line for line in md.splitlines()[1:] if line.strip())
    assert first == (
        "**The strategy earned +20.0% a year after costs (+25.0% before costs), Sharpe 1.23 "
        "(1.50 before costs). Costs took 3.7% of value a year at 12x two-way turnover.**"
    )
    text = verdict({"cagr": -0.1, "sharpe": -0.5}, {"cagr": 0.3, "sharpe": 1.1})
    assert "buy-and-hold earned +30.0% a year, Sharpe 1.10, on the same bars" in text
    assert verdict({}, None) == ""
