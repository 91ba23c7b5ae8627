"""Plain Backtrader reproduces ``mtl-bt backtest`` in three lines; rules without heads();
headless plotting; the public order hook (real runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import backtrader as bt
import numpy as np
import pytest
from click.testing import CliRunner

from mtl_bt.backtesting.broker import configure_broker
from mtl_bt.cli import main
from mtl_bt.data.io import write_frame
from mtl_bt.errors import UserError
from mtl_bt.strategies import MTLStrategy

MEMORYLESS = {"hysteresis": False, "margin": 0.0}  # the pre-cost-aware rule: trades often


def test_three_lines_reproduce_the_cli_backtest(tmp_path, trained, frames):
    train_dir, _, _ = trained
    config = train_dir / "config.toml"
    args = ["backtest", str(config), "--model", str(train_dir), "--out", str(tmp_path / "o")]
    for symbol, frame in frames.items():
        path = tmp_path / f"{symbol}.csv"
        write_frame(frame, path)
        args += ["--data", str(path)]
    res = CliRunner().invoke(main, [*args, "--quiet"])
    assert res.exit_code == 0, res.output
    cli = json.loads((tmp_path / "o" / "metrics.json").read_text())["portfolio"]

    cerebro = bt.Cerebro()
    for symbol, frame in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=symbol)
    # the three lines
    configure_broker(cerebro, config)
    strategy, params = MTLStrategy.from_config(config, train_dir)
    cerebro.addstrategy(strategy, **params)
    cerebro.run()
    assert cerebro.broker.getvalue() == pytest.approx(cli["final_value"], rel=1e-12)
    assert cli["final_value"] != 100_000.0
    # without them (Backtrader's and the class's defaults) the run is not the config's
    plain = bt.Cerebro()
    for symbol, frame in frames.items():
        plain.adddata(bt.feeds.PandasData(dataname=frame), name=symbol)
    plain.addstrategy(MTLStrategy, predictor=params["predictor"])
    plain.run()
    assert plain.broker.getvalue() != pytest.approx(cli["final_value"], rel=1e-6)


class NoHeads:
    """A third-party rule without heads(): long when the 1-bar return is positive."""

    def weights(self, predictions, **context):
        return np.where(np.asarray(predictions["return@1"]) > 0, 0.4, 0.0)


def test_a_rule_without_heads_holds_the_models_return_horizon_or_is_refused(
    frames, predictors, real_frames, real_model
):
    from mtl_bt.signals.base import SignalRule

    class Rule(NoHeads, SignalRule):
        pass

    # the synthetic model predicts return@1 and return@3: ambiguous -> refused naming the rule
    cerebro = bt.Cerebro(stdstats=False)
    for s, f in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=f), name=s)
    cerebro.addstrategy(MTLStrategy, predictor=predictors, signal=Rule())
    with pytest.raises(UserError, match=r"signal rule 'Rule' has no heads\(\).*\[1, 3\]"):
        cerebro.run()
    # the real model has one return horizon (1): it is the holding period
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=real_frames["AAPL"]), name="AAPL")
    cerebro.addstrategy(MTLStrategy, predictor=real_model, signal=Rule(), any_bar_size=True)
    strat = cerebro.run()[0]
    assert strat.hold == 1 and strat.decisions > 100
    # an explicit horizon= always wins
    cerebro = bt.Cerebro(stdstats=False)
    for s, f in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=f), name=s)
    cerebro.addstrategy(MTLStrategy, predictor=predictors, signal=Rule(), horizon=3)
    assert cerebro.run()[0].hold == 3


def test_cerebro_plot_works_headless_after_import_mtl_bt(tmp_path, real_frames):
    """In a fresh process without a display and without a chosen backend: Agg, and the figure
    saves. With MPLBACKEND set, the user's backend is kept."""
    path = tmp_path / "AAPL.csv"
    real_frames["AAPL"].iloc[:200].tz_convert(None).to_csv(path)
    code = textwrap.dedent(
        f"""
        import backtrader as bt
        import mtl_bt  # noqa: F401
        import matplotlib
        import pandas as pd

        cerebro = bt.Cerebro()
        df = pd.read_csv({str(path)!r}, index_col=0, parse_dates=True)
        cerebro.adddata(bt.feeds.PandasData(dataname=df))
        cerebro.run()
        figs = cerebro.plot(iplot=False)
        figs[0][0].savefig({str(tmp_path / "run.png")!r})
        print(matplotlib.get_backend())
        """
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == "agg"
    assert (tmp_path / "run.png").stat().st_size > 1000
    chosen = subprocess.run(
        [sys.executable, "-c", "import mtl_bt, matplotlib; print(matplotlib.get_backend())"],
        env={**env, "MPLBACKEND": "svg"},
        capture_output=True,
        text=True,
    )
    assert chosen.stdout.strip() == "svg"


@pytest.mark.parametrize(
    ("code", "extra_env", "want"),
    [
        # import mtl_bt loads neither the plot module nor matplotlib (0.4-1.2 s a process)
        (
            "import sys, mtl_bt; print('matplotlib' in sys.modules, 'backtrader.plot' in sys.modules)",
            {},
            "False False",
        ),
        # a backend the user chose survives Backtrader's matplotlib.use('TkAgg')
        (
            "import mtl_bt, backtrader.plot, matplotlib; print(matplotlib.get_backend())",
            {"MPLBACKEND": "svg"},
            "svg",
        ),
        (
            "import mtl_bt, matplotlib; matplotlib.use('pdf'); import backtrader.plot; "
            "print(matplotlib.get_backend())",
            {},
            "pdf",
        ),
        # the plot module loaded before mtl_bt: Agg all the same
        ("import backtrader.plot, mtl_bt, matplotlib; print(matplotlib.get_backend())", {}, "agg"),
    ],
)
def test_headless_backend_is_chosen_when_the_plot_module_loads(code, extra_env, want):
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env={**env, **extra_env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == want.lower()


def test_docs_order_hook_example_subclass_runs(real_frames, real_model):
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "backtesting.md"
    block = re.search(r"<!-- snippet: order-hook -->\s*```python\n(.*?)```", docs.read_text(), re.S)
    assert block, "docs/backtesting.md lacks the order-hook example"
    namespace: dict = {}
    exec(compile(block.group(1), str(docs), "exec"), namespace)  # noqa: S102 - our own docs
    cerebro = bt.Cerebro(stdstats=False)
    for s, f in real_frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=f), name=s)
    cerebro.addstrategy(
        namespace["LimitOrders"],
        predictor=real_model,
        signal_options=MEMORYLESS,
        any_bar_size=True,
    )
    strat = cerebro.run()[0]
    orders = strat.broker.orders
    assert strat.decisions > 50 and len(orders) > 10
    assert all(o.exectype == bt.Order.Limit for o in orders)
    assert any(o.status == o.Completed for o in orders)
