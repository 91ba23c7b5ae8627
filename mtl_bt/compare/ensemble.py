"""The single-task ensemble: one single-task model per task, read as one multi-head model.

``EnsemblePredictor`` joins fold models that were trained on the same data, features and
fold (each on one task) into the interface ``MTLStrategy`` reads from a ``Predictor``:
the same raw feature rows go to every member (each scales them with its own saved scaler),
and each member answers for its own task. So a signal rule trades the single-task
ensemble with exactly the heads it reads from the MTL model (return, direction,
volatility); only the training (joint vs separate) differs. ``HeadSubset`` exposes some of
a model's heads as a model of its own (tests build an ensemble from copies of MTL heads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.errors import CheckpointError


class HeadSubset:
    """A predictor restricted to ``tasks`` (same weights, same scaler, fewer outputs)."""

    def __init__(self, predictor: Any, tasks: Sequence[str]) -> None:
        missing = [t for t in tasks if t not in predictor.task_names]
        if missing:
            raise CheckpointError(f"the model predicts {predictor.task_names}, not {missing}")
        self._inner = predictor
        self.task_names = list(tasks)
        self.tasks = [t for t in predictor.tasks if t.name in self.task_names]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def predict(self, x: np.ndarray, asset_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        out = self._inner.predict(x, asset_ids)
        return {t: out[t] for t in self.task_names}

    def predict_frame(self, features_by_symbol: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        frame = self._inner.predict_frame(features_by_symbol)
        return frame[["datetime", "symbol", *self.task_names]]


class EnsemblePredictor:
    """Several one-task (or few-task) fold models of one fold, answering as one model.

    ``task_order``: the order of ``task_names`` (the MTL model's), default the members'.
    Members must share features, lookback, symbols and the fold's dates.
    """

    def __init__(self, members: Sequence[Any], task_order: Sequence[str] | None = None) -> None:
        if not members:
            raise CheckpointError("an ensemble needs at least one member model")
        first = members[0]
        owner: dict[str, int] = {}
        for k, m in enumerate(members):
            if list(m.feature_columns) != list(first.feature_columns):
                raise CheckpointError(
                    f"ensemble member {k} uses features {list(m.feature_columns)}, member 0 "
                    f"{list(first.feature_columns)}: train every member on one config"
                )
            if int(getattr(m, "lookback", 1)) != int(getattr(first, "lookback", 1)):
                raise CheckpointError(f"ensemble member {k} has another lookback than member 0")
            fold, fold0 = dict(m.fold or {}), dict(first.fold or {})
            for key in ("train_end", "test_start", "test_end"):
                if fold.get(key) != fold0.get(key):
                    raise CheckpointError(
                        f"ensemble member {k}: fold {key} {fold.get(key)} differs from member "
                        f"0's {fold0.get(key)}: members must come from the same fold"
                    )
            for t in m.task_names:
                if t in owner:
                    raise CheckpointError(f"task {t} is predicted by members {owner[t]} and {k}")
                owner[t] = k
        order = list(task_order) if task_order is not None else list(owner)
        if sorted(order) != sorted(owner):
            raise CheckpointError(f"task order {order} does not match the members' {list(owner)}")
        self.members = list(members)
        self._owner = owner
        self.task_names: list[str] = order
        by_name = {t.name: t for m in members for t in m.tasks}
        self.tasks = [by_name[t] for t in order]
        self.horizons = {t.name: t.horizon for t in self.tasks}
        self.feature_spec = first.feature_spec
        self.feature_columns = list(first.feature_columns)
        self.symbols = list(first.symbols)
        self.lookback = int(getattr(first, "lookback", 1))
        self.fold = dict(first.fold or {})

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.members[0].features(frame)

    def asset_ids(self, symbols: list[str]) -> np.ndarray:
        return self.members[0].asset_ids(symbols)

    def _uses_asset(self) -> bool:
        return any(getattr(m, "_uses_asset", lambda: False)() for m in self.members)

    def predict(self, x: np.ndarray, asset_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for m in self.members:
            out.update(m.predict(x, asset_ids))
        return {t: out[t] for t in self.task_names}

    def predict_frame(self, features_by_symbol: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        merged = None
        for m in self.members:
            frame = m.predict_frame(features_by_symbol)
            keep = ["datetime", "symbol", *m.task_names]
            merged = (
                frame[keep]
                if merged is None
                else merged.merge(frame[keep], on=["datetime", "symbol"], how="outer")
            )
        assert merged is not None
        return (
            merged[["datetime", "symbol", *self.task_names]]
            .sort_values(["datetime", "symbol"], kind="stable")
            .reset_index(drop=True)
        )


def merge_predictions(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Out-of-sample prediction tables of the members (one task each) joined on
    ``datetime, symbol, fold`` (outer: a row one member lacks keeps NaN for its task)."""
    keys = ["datetime", "symbol", "fold"]
    merged: pd.DataFrame | None = None
    for table in tables:
        merged = table if merged is None else merged.merge(table, on=keys, how="outer")
    if merged is None:
        return pd.DataFrame(columns=keys)
    return merged.sort_values(["fold", "datetime", "symbol"], kind="stable").reset_index(drop=True)
