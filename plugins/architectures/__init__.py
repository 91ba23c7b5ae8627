"""Built-in architectures (entry point `builtin_architectures`)."""

from mtl_bt import hookimpl
from mtl_bt.plugins.architectures.cross_stitch import CrossStitch
from mtl_bt.plugins.architectures.hierarchical import Hierarchical
from mtl_bt.plugins.architectures.mmoe import MMoE
from mtl_bt.plugins.architectures.ple import PLE
from mtl_bt.plugins.architectures.shared_bottom import SharedBottom
from mtl_bt.plugins.architectures.soft_sharing import SoftSharing


@hookimpl
def register_architectures(register):
    register("shared_bottom", SharedBottom, "Shared MLP encoder + one linear head per task.")
    register("soft_sharing", SoftSharing, "One tower per task, L2 penalty between tower layers.")
    register(
        "cross_stitch", CrossStitch, "Per-task MLP columns mixed by learned cross-stitch units."
    )
    register("mmoe", MMoE, "Shared experts mixed by one softmax gate per task (MMoE).")
    register("ple", PLE, "Progressive layered extraction: task + shared experts per level.")
    register("hierarchical", Hierarchical, "Lower-level task outputs feed higher-level heads.")
