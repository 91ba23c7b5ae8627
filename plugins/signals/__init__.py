"""Built-in signals (entry point `builtin_signals`)."""

from mtl_bt import hookimpl


@hookimpl
def register_signals(register):
    pass
