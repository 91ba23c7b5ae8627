"""The torchjd plugin pack (entry point ``torchjd``): torchjd's aggregators and
scalarizers as weightings named ``torchjd_<name>``. Install with
``pip install 'mtl-bt[torchjd]'``; without torchjd this plugin registers nothing.

mtl-bt keeps its own implementations where torchjd has none (GradNorm, curriculum,
RLW as a loss-level scheme) and its own equal/fixed/uncertainty/DWA/PCGrad/MGDA/CAGrad;
docs/weighting.md says which is which.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

from mtl_bt import hookimpl

#: registered name -> torchjd.aggregation class name
AGGREGATORS = {
    "upgrad": "UPGrad",
    "nash_mtl": "NashMTL",
    "imtl_g": "IMTLG",
    "aligned_mtl": "AlignedMTL",
    "gradvac": "GradVac",
    "dualproj": "DualProj",
    "config": "ConFIG",
    "cagrad": "CAGrad",
    "pcgrad": "PCGrad",
    "mgda": "MGDA",
    "graddrop": "GradDrop",
    "fairgrad": "FairGrad",
    "excess_mtl": "ExcessMTL",
    "pcd": "PCD",
    "trimmed_mean": "TrimmedMean",
    "mean": "Mean",
    "sum": "Sum",
    "random": "Random",
    "constant": "Constant",
}
#: registered name -> torchjd.scalarization class name
SCALARIZERS = {
    "famo": "FAMO",
    "imtl_l": "IMTLL",
    "geometric_mean": "GeometricMean",
    "stch": "STCH",
    "uw": "UW",
    "dwa_scalarizer": "DWA",
    "pbi": "PBI",
    "cosmos": "COSMOS",
    "mean_loss": "Mean",
    "random_loss": "Random",
}
PREFIX = "torchjd_"


def example_options(name: str, k: int) -> dict[str, object]:
    """Options for the schemes whose torchjd constructor has required arguments (the others
    need none), for ``k`` tasks: what the pack's tests and the weighting benchmark build them
    with (torchjd's own examples; ``c = 0.5`` is CAGrad's paper value)."""
    ones = [1.0] * k
    return {
        "torchjd_trimmed_mean": {"trim_number": 1},
        "torchjd_constant": {"weights": [1.0 + i / 2 for i in range(k)]},
        "torchjd_cagrad": {"c": 0.5},
        "torchjd_fairgrad": {"alpha": 1.0},
        "torchjd_stch": {"mu": 1.0},
        "torchjd_pbi": {"theta": 1.0, "weights": ones},
        "torchjd_cosmos": {"lambda_": 1.0, "weights": ones},
    }.get(name, {})


#: the torchjd release the pack is tested against (the extra pins it): every class named in
#: AGGREGATORS and SCALARIZERS exists there, so its names register without importing it
TESTED_VERSION = "0.18.0"


def available() -> bool:
    return importlib.util.find_spec("torchjd") is not None


class _Lazy:
    """Factory of one torchjd weighting that imports torchjd on first use.

    Importing torchjd pulls in cvxpy and scipy.stats: seconds per process (6 s at a load of
    6 on 2 cores), paid by every ``mtl-bt`` command and every ``compare`` worker when the
    registry loads, although almost no config names a torchjd scheme.
    """

    def __init__(self, name: str, kind: str, cls_name: str) -> None:
        self.name, self.kind, self.cls_name = name, kind, cls_name
        self.__doc__ = f"torchjd.{kind}.{cls_name}"
        self._cls: type | None = None

    def resolve(self) -> type:
        """The adapter class (``adapters.aggregator`` / ``adapters.scalarizer``)."""
        if self._cls is None:
            import importlib

            from mtl_bt.plugins.torchjd import adapters

            torchjd_cls = getattr(importlib.import_module(f"torchjd.{self.kind}"), self.cls_name)
            make = adapters.aggregator if self.kind == "aggregation" else adapters.scalarizer
            self._cls = make(self.name, torchjd_cls)
        return self._cls

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<torchjd weighting {self.name} ({self.__doc__}), imported on first use>"


def _classes(version: str) -> tuple[dict[str, str], dict[str, str]]:
    """The aggregators and scalarizers this torchjd has (another release than the tested
    one is imported to see which of the names it defines)."""
    if version == TESTED_VERSION:
        return AGGREGATORS, SCALARIZERS
    import torchjd.aggregation as aggregation
    import torchjd.scalarization as scalarization

    return (
        {k: v for k, v in AGGREGATORS.items() if hasattr(aggregation, v)},
        {k: v for k, v in SCALARIZERS.items() if hasattr(scalarization, v)},
    )


@hookimpl
def register_weightings(register):
    if not available():
        return
    version = importlib.metadata.version("torchjd")
    aggregators, scalarizers = _classes(version)
    for short, cls_name in aggregators.items():
        name = PREFIX + short
        register(
            name,
            _Lazy(name, "aggregation", cls_name),
            f"torchjd aggregator {cls_name} on the shared-parameter task gradients.",
            source=f"torchjd {version}: torchjd.aggregation.{cls_name}",
        )
    for short, cls_name in scalarizers.items():
        name = PREFIX + short
        register(
            name,
            _Lazy(name, "scalarization", cls_name),
            f"torchjd scalarizer {cls_name} on the task losses (loss level).",
            source=f"torchjd {version}: torchjd.scalarization.{cls_name}",
        )
