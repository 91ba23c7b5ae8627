"""Built-in sources (entry point `builtin_sources`)."""

from mtl_bt import hookimpl


@hookimpl
def register_sources(register):
    pass
