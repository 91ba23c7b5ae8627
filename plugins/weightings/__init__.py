"""Built-in loss-weighting schemes (entry point `builtin_weightings`)."""

from mtl_bt import hookimpl
from mtl_bt.plugins.weightings.simple import Equal, Fixed


@hookimpl
def register_weightings(register):
    register("equal", Equal, "All tasks weighted 1 (plain sum of losses).")
    register("fixed", Fixed, "Constant user-chosen weight per task.")
