"""Built-in signal rules (entry point `builtin_signals`)."""

from mtl_bt import hookimpl


@hookimpl
def register_signals(register):
    from mtl_bt.plugins.signals.agree_voltarget import AgreeVolTarget
    from mtl_bt.plugins.signals.sign import SignRule
    from mtl_bt.plugins.signals.vol_managed import VolManaged

    register(
        "agree_voltarget",
        AgreeVolTarget,
        "trade when return and direction heads agree and the edge clears costs; "
        "size by target volatility from the volatility head",
    )
    register("sign", SignRule, "sign of the return head, equal weight, cost threshold")
    register(
        "vol_managed",
        VolManaged,
        "long every asset sized target_vol / predicted vol (Moreira & Muir 2017), capped",
    )
