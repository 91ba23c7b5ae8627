"""Build a model from the config, and rebuild one from a checkpoint's plain data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtl_bt import registry
from mtl_bt.config import ModelConfig
from mtl_bt.errors import CheckpointError, ConfigError
from mtl_bt.models.base import COMMON_OPTIONS, MTLModel
from mtl_bt.models.guards import check_model
from mtl_bt.tasks.base import TaskSpec

_FROM_SECTION = {
    "hidden": "model.hidden",
    "dropout": "model.dropout",
    "asset_embedding": "model.asset_embedding",
    "encoder": "model.sequence.encoder",
    "encoder_hidden": "model.sequence.hidden",
    "lookback": "model.sequence.lookback",
    "n_assets": "the number of symbols",
}


def model_options(model_cfg: ModelConfig, n_assets: int = 1) -> dict[str, Any]:
    """Keyword options for the architecture: [model] section + model.options."""
    clash = sorted(set(model_cfg.options) & set(COMMON_OPTIONS))
    if clash:
        key = clash[0]
        raise ConfigError(
            f"model.options.{key} duplicates a model setting: set {_FROM_SECTION[key]} instead"
        )
    seq = model_cfg.sequence
    return {
        "hidden": list(model_cfg.hidden),
        "dropout": model_cfg.dropout,
        "n_assets": n_assets,
        "asset_embedding": model_cfg.asset_embedding,
        "encoder": seq.encoder,
        "encoder_hidden": seq.hidden,
        "lookback": seq.lookback if seq.encoder != "none" else None,
        **model_cfg.options,
    }


def build_model(
    model_cfg: ModelConfig, in_features: int, task_specs: Sequence[TaskSpec], n_assets: int = 1
) -> MTLModel:
    """The configured architecture for ``in_features`` inputs and these tasks."""
    cls = registry.get("architecture", model_cfg.architecture)
    model = cls(in_features, list(task_specs), **model_options(model_cfg, n_assets))
    if not isinstance(model, MTLModel):
        raise ConfigError(
            f"architecture {model_cfg.architecture!r} built a {type(model).__name__}, "
            "not a mtl_bt.models.MTLModel"
        )
    check_model(model, model_cfg.architecture)  # names missing/extra heads before training
    return model


def build_model_from_dict(d: Mapping[str, Any]) -> MTLModel:
    """Rebuild from ``{"architecture": name, "init_kwargs": {...}}`` (``model.describe()``)."""
    try:
        name, kwargs = d["architecture"], d["init_kwargs"]
    except (KeyError, TypeError):
        raise CheckpointError(
            "model description needs keys 'architecture' and 'init_kwargs' "
            f"(got {sorted(d) if isinstance(d, Mapping) else type(d).__name__})"
        ) from None
    return registry.get("architecture", name)(**dict(kwargs))
