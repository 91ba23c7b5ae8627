"""Built-in architectures (entry point `builtin_architectures`)."""

from mtl_bt import hookimpl


@hookimpl
def register_architectures(register):
    pass
