"""Built-in signal rules (entry point `builtin_signals`)."""

from mtl_bt import hookimpl


@hookimpl
def register_signals(register):
    from mtl_bt.plugins.signals.agree_voltarget import AgreeVolTarget
    from mtl_bt.plugins.signals.sign import SignRule

    register(
        "agree_voltarget",
        AgreeVolTarget,
        "trade when return and direction heads agree and the edge clears costs; "
        "size by target volatility from the volatility head",
    )
    register("sign", SignRule, "sign of the return head, equal weight, cost threshold")
