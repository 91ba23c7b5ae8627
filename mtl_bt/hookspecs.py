"""Hook specifications: the contract between mtl-bt and its plugins.

Every hook is callback-style: it receives a ``register`` function and calls it
once per item, ``register(name, factory, description)``. Built-in plugins use
these hooks exactly as a third-party package does.
"""

import pluggy

hookspec = pluggy.HookspecMarker("mtl_bt")
hookimpl = pluggy.HookimplMarker("mtl_bt")


@hookspec
def register_sources(register):
    """Register market-data sources: factories returning a ``mtl_bt.data.Source``."""


@hookspec
def register_features(register):
    """Register causal feature functions ``fn(frame, **params) -> DataFrame``."""


@hookspec
def register_tasks(register):
    """Register task classes (subclasses of ``mtl_bt.tasks.Task``)."""


@hookspec
def register_architectures(register):
    """Register model classes (subclasses of ``mtl_bt.models.MTLModel``)."""


@hookspec
def register_weightings(register):
    """Register loss-weighting classes (subclasses of ``mtl_bt.weighting.Weighting``)."""


@hookspec
def register_signals(register):
    """Register signal rules (subclasses of ``mtl_bt.signals.SignalRule``)."""
