"""Built-in tasks (entry point `builtin_tasks`)."""

from mtl_bt import hookimpl


@hookimpl
def register_tasks(register):
    pass
