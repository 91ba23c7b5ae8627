"""Cross-asset transfer, leave-one-asset-out.

For each held-out asset, a model trained on the *other* assets only (``pooled``) forecasts
the held-out asset's volatility and return, against that asset's own single-task model
(``own``, trained on its rows only). Both are ``mtl-bt compare``'s single-task model of the
task, with the same folds, features, epochs and early stopping; only the training rows
differ. Neither has an asset embedding: the held-out asset has no trained embedding row,
and a one-asset model's embedding is only a learned constant input.

``python -m mtl_bt.experiments.transfer CONFIG --seeds 10 --out DIR`` (docs/experiments.md).
"""

from __future__ import annotations

from mtl_bt.experiments.common import Design, Pool, design_command

ARMS = ("pooled", "own")


def loao_pools(symbols: list[str]) -> list[Pool]:
    """Per symbol: a model of the other symbols and the symbol's own model, both
    forecasting it."""
    pools = []
    for held in symbols:
        others = tuple(s for s in symbols if s != held)
        pools += [Pool("pooled", others, (held,)), Pool("own", (held,), (held,))]
    return pools


DESIGN = Design(
    name="transfer",
    arms=ARMS,
    tasks=("volatility", "return"),
    pools=loao_pools,
    asset_embedding=0,
    title="Cross-asset transfer (leave one asset out)",
    own_features_only=True,
)

main = design_command(DESIGN, __doc__.split("\n\n")[1].replace("\n", " "))

if __name__ == "__main__":  # pragma: no cover
    main()
