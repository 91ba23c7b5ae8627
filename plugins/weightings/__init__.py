"""Built-in loss-weighting schemes (entry point `builtin_weightings`)."""

from mtl_bt import hookimpl
from mtl_bt.plugins.weightings.cagrad import CAGrad
from mtl_bt.plugins.weightings.curriculum import Curriculum
from mtl_bt.plugins.weightings.dwa import DWA
from mtl_bt.plugins.weightings.gradnorm import GradNorm
from mtl_bt.plugins.weightings.mgda import MGDA
from mtl_bt.plugins.weightings.pcgrad import PCGrad
from mtl_bt.plugins.weightings.rlw import RLW
from mtl_bt.plugins.weightings.simple import Equal, Fixed
from mtl_bt.plugins.weightings.uncertainty import Uncertainty


@hookimpl
def register_weightings(register):
    register("equal", Equal, "All tasks weighted 1 (plain sum of losses).")
    register("fixed", Fixed, "Constant user-chosen weight per task.")
    register(
        "uncertainty",
        Uncertainty,
        "Learned homoscedastic uncertainty, L/(2e^s) + s/2 (Kendall 2018).",
    )
    register(
        "gradnorm",
        GradNorm,
        "Learned weights balancing gradient norms at the last shared layer (Chen 2018).",
    )
    register(
        "dwa", DWA, "Dynamic Weight Average on epoch-mean loss ratios, K softmax(w/T) (Liu 2019)."
    )
    register(
        "pcgrad",
        PCGrad,
        "Project conflicting task gradients of the shared parameters, then sum (Yu 2020).",
    )
    register(
        "curriculum",
        Curriculum,
        "Tasks enter over epochs with a linear weight ramp, per-task schedule.",
    )
    register(
        "mgda",
        MGDA,
        "Min-norm point of the convex hull of shared-parameter task gradients (Sener 2018).",
    )
    register(
        "cagrad",
        CAGrad,
        "Conflict-averse gradient: best worst-task step near the mean gradient (Liu 2021).",
    )
    register("rlw", RLW, "Random loss weights drawn every step, seeded (Lin 2022).")
