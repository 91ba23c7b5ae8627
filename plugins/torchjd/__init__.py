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


def available() -> bool:
    return importlib.util.find_spec("torchjd") is not None


@hookimpl
def register_weightings(register):
    if not available():
        return
    import torchjd.aggregation as aggregation
    import torchjd.scalarization as scalarization

    from mtl_bt.plugins.torchjd import adapters

    version = importlib.metadata.version("torchjd")
    for short, cls_name in AGGREGATORS.items():
        cls = getattr(aggregation, cls_name, None)
        if cls is None:  # not in this torchjd version
            continue
        name = PREFIX + short
        register(
            name,
            adapters.aggregator(name, cls),
            f"torchjd aggregator {cls_name} on the shared-parameter task gradients.",
            source=f"torchjd {version}: torchjd.aggregation.{cls_name}",
        )
    for short, cls_name in SCALARIZERS.items():
        cls = getattr(scalarization, cls_name, None)
        if cls is None:
            continue
        name = PREFIX + short
        register(
            name,
            adapters.scalarizer(name, cls),
            f"torchjd scalarizer {cls_name} on the task losses (loss level).",
            source=f"torchjd {version}: torchjd.scalarization.{cls_name}",
        )
