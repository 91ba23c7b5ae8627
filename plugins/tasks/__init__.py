"""Built-in tasks (entry point `builtin_tasks`)."""

from mtl_bt import hookimpl
from mtl_bt.plugins.tasks.direction import DirectionTask
from mtl_bt.plugins.tasks.returns import ReturnTask
from mtl_bt.plugins.tasks.volatility import VolatilityTask
from mtl_bt.plugins.tasks.volatility_ratio import VolatilityRatioTask
from mtl_bt.plugins.tasks.volume import VolumeTask


@hookimpl
def register_tasks(register):
    register(
        "return", ReturnTask, "Forward log return over h bars; MSE or Huber; IC, rank IC, RMSE."
    )
    register(
        "direction", DirectionTask, "P(forward h-bar return > 0); BCE with logits; accuracy, AUC."
    )
    register("volatility", VolatilityTask, "Realised per-bar vol of the next h bars, in log space.")
    register(
        "volatility_ratio",
        VolatilityRatioTask,
        "Next-h realised vol / trailing EWMA vol at t (a ratio; x anchor gives a level).",
    )
    register("volume", VolumeTask, "log(next-h mean volume / trailing mean); needs real volume.")
