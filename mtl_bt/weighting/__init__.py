"""Loss-weighting schemes: the interface (loss-level ``Weighting``, gradient-level
``GradientWeighting`` / ``GramWeighting``) and option parsing. The schemes
themselves are plugins (``mtl_bt.plugins.weightings``)."""

from mtl_bt.weighting.base import Weighting
from mtl_bt.weighting.gradient import GradientWeighting, GramWeighting
from mtl_bt.weighting.options import Option, parse_options

__all__ = ["GradientWeighting", "GramWeighting", "Option", "Weighting", "parse_options"]
