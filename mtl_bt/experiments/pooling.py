"""One network pooled over every asset against one network per asset.

After Zhang, Zhang, Cucuringu and Qian, "Volatility forecasting with machine learning and
intraday commonality" (J. Financial Econometrics, 2023): a neural network trained on all
stocks together forecasts realised volatility better than one network per stock. Here the
pooled model (``pooled``) trains on every asset's rows, each per-asset model (``own``) on
its asset's rows only; both are ``mtl-bt compare``'s single-task model of the task with
the config's architecture (asset embedding included), folds, features, epochs and early
stopping, and both forecast every asset. Volatility is the claim; return is scored too.

``python -m mtl_bt.experiments.pooling CONFIG --seeds 10 --out DIR`` (docs/experiments.md).
"""

from __future__ import annotations

from mtl_bt.experiments.common import Design, Pool, design_command

ARMS = ("pooled", "own")


def pooled_pools(symbols: list[str]) -> list[Pool]:
    """One model of every symbol, then one model per symbol."""
    everyone = tuple(symbols)
    return [Pool("pooled", everyone, everyone)] + [Pool("own", (s,), (s,)) for s in symbols]


DESIGN = Design(
    name="pooling",
    arms=ARMS,
    tasks=("volatility", "return"),
    pools=pooled_pools,
    title="One pooled network vs one network per asset",
)

main = design_command(DESIGN, __doc__.split("\n\n")[1].replace("\n", " "))

if __name__ == "__main__":  # pragma: no cover
    main()
