"""Conformance kit for plugin authors (installed with mtl-bt; see docs/plugins.md).

``check_feature``, ``check_task``, ``check_architecture``, ``check_weighting``,
``check_signal`` and ``check_source`` run the contract and laws of one registered item
and raise ``ConformanceError`` naming the plugin, the law and where it broke.
Fixtures: ``pytest_plugins = ["mtl_bt.testing.fixtures"]``.
"""

from mtl_bt.testing.checks import (
    ConformanceError,
    Report,
    check_architecture,
    check_cross_feature,
    check_feature,
    check_signal,
    check_source,
    check_task,
    check_weighting,
)
from mtl_bt.testing.data import garch_bars, sample_bars, tiny_config

__all__ = [
    "ConformanceError",
    "Report",
    "check_architecture",
    "check_cross_feature",
    "check_feature",
    "check_signal",
    "check_source",
    "check_task",
    "check_weighting",
    "garch_bars",
    "sample_bars",
    "tiny_config",
]
