"""Built-in features (entry point `builtin_features`)."""

from mtl_bt import hookimpl


@hookimpl
def register_features(register):
    pass
