"""Walk-forward training end to end: dataset -> folds -> train -> OOS predictions -> files.

Every fold gets a fresh model trained on its own past only (scaler fitted on its
training slice, weighting reset), predicts its test window, and is saved as
its own checkpoint. Artefacts are rewritten atomically after each fold, so an
interrupted run keeps every finished fold.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mtl_bt import checkpoint as ckpt
from mtl_bt import registry
from mtl_bt.atomic import atomic_write, write_bytes, write_text
from mtl_bt.config import Config, TaskConfig, WeightingConfig, dumps
from mtl_bt.errors import ConfigError, DataError
from mtl_bt.predictor import scale_array
from mtl_bt.training.dataset import Dataset, build_dataset, cached_dataset, cached_features
from mtl_bt.training.guards import check_causal
from mtl_bt.training.splits import Split, walk_forward_splits
from mtl_bt.training.trainer import fit, make_batches, predict_raw


@dataclass
class Components:
    """Everything built from the config before any data is read (fails fast)."""

    tasks: list[Any]
    feature_spec: Any
    weighting: Any
    lookback: int


@dataclass
class TrainResult:
    """What ``train_walk_forward`` produced (also written to ``out_dir`` if given)."""

    folds: list[dict[str, Any]]
    checkpoints: list[Path]
    predictions: pd.DataFrame  # datetime, symbol, fold, <task>..., target_<task>...
    train_log: pd.DataFrame  # one row per (fold, epoch)
    fold_metrics: pd.DataFrame  # fold, task, metric, value, n
    task_names: list[str]
    symbols: list[str]
    out_dir: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    #: the fold models in memory (``Predictor.from_checkpoint(c)`` works without files)
    models: list[ckpt.Checkpoint] = field(default_factory=list)


def _plugin(kind: str, section: str, factory: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Build a plugin; a rejected keyword (unknown option) becomes a ConfigError."""
    try:
        return factory(*args, **kw)
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise ConfigError(f"[{section}] options rejected by the {kind} plugin: {exc}") from None


def build_components(config: Config) -> Components:
    """Tasks, features and weighting from the config; bad names/options fail here."""
    from mtl_bt.features import FeatureSpec
    from mtl_bt.tasks import build_tasks

    tasks = build_tasks(config.tasks)
    spec = FeatureSpec.from_config(config.features)
    factory = registry.get("weighting", config.weighting.name)
    names = [t.name for t in tasks]
    weighting = _plugin("weighting", "weighting", factory, names, **config.weighting.options)
    try:  # named in the trainer's per-step guard
        weighting.registry_name = config.weighting.name
    except AttributeError:  # pragma: no cover - a weighting with __slots__
        pass
    seq = config.model.sequence
    lookback = seq.lookback if seq.encoder != "none" else 1
    # a throw-away model checks the architecture and its options without data
    build_fold_model(config, len(spec.columns()), tasks, len(config.data.symbols))
    return Components(tasks, spec, weighting, lookback)


def build_fold_model(config: Config, in_features: int, tasks: list[Any], n_assets: int) -> Any:
    from mtl_bt.models import build_model

    specs = [t.spec for t in tasks]
    return build_model(config.model, in_features, specs, n_assets)


def single_task(config: Config, task: str = "return") -> Config:
    """The same run with one task: ``"return"`` (its first horizon) or ``"return@5"``.

    The baseline MTL is compared against; weighting becomes ``equal`` (with
    one task every scheme is a rescaling of the loss).
    """
    kind, _, horizon = task.partition("@")
    for tc in config.tasks:
        if tc.name != kind:
            continue
        if horizon:
            if not horizon.isdigit() or int(horizon) not in tc.horizons:
                continue
            h = int(horizon)
        else:
            h = tc.horizons[0]
        one = TaskConfig(name=tc.name, horizons=[h], options=dict(tc.options))
        return config.model_copy(update={"tasks": [one], "weighting": WeightingConfig()}, deep=True)
    raise ConfigError(
        f"single_task: task {task!r} is not configured; tasks are {config.task_names()}"
    )


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).isoformat()


def fold_metadata(ds: Dataset, split: Split) -> dict[str, Any]:
    """Fold bounds as ISO timestamps (inclusive first/last bars) + axis positions."""
    ax = ds.axis
    return {
        "fold": split.fold,
        "train_start": _iso(ax[split.train_start]),
        "fit_end": _iso(ax[split.fit_end - 1]),
        "val_start": _iso(ax[split.val_start]),
        "train_end": _iso(ax[split.train_end - 1]),
        "test_start": _iso(ax[split.test_start]),
        "test_end": _iso(ax[split.test_end - 1]),
        "purge": split.purge,
        "embargo": split.embargo,
        "positions": split.as_dict(),
    }


@dataclass
class FoldData:
    """One fold's rows (dataset row ids) and its scaler, fitted on ``fit_rows`` only."""

    fit_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray
    scaler: Any
    scaled: torch.Tensor  # every dataset row scaled with this fold's scaler (float32)


def prepare_fold(ds: Dataset, split: Split, scaler_kind: str) -> FoldData:
    """Rows of each slice (purged per row as well) and the train-only scaler.

    Train-proper rows need all targets known and their target window to end
    before the validation slice; validation rows before the test slice.
    """
    from mtl_bt.features import Scaler

    fit_rows = ds.rows_in(
        split.train_start, split.fit_end, trainable=True, label_before=split.val_start
    )
    val_rows = ds.rows_in(
        split.val_start, split.train_end, trainable=True, label_before=split.test_start
    )
    test_rows = ds.rows_in(split.test_start, split.test_end, trainable=False)
    if len(fit_rows) == 0:
        raise DataError(
            f"fold {split.fold}: no training rows with known targets between "
            f"{ds.axis[split.train_start]} and {ds.axis[split.fit_end - 1]}; "
            + (
                f"model.sequence.lookback = {ds.lookback} needs {ds.lookback - 1} bars before a "
                "row can be a sample: lower it or raise walk_forward.train_bars"
                if ds.lookback > 1
                else "raise walk_forward.train_bars"
            )
        )
    scaler = Scaler(scaler_kind).fit(ds.features[fit_rows].astype(np.float64))
    scaled = torch.from_numpy(np.ascontiguousarray(scale_array(scaler, ds.features)))
    return FoldData(fit_rows, val_rows, test_rows, scaler, scaled)


def train_fold(
    config: Config,
    comp: Components,
    ds: Dataset,
    split: Split,
    *,
    progress: bool = False,
    targets: np.ndarray | None = None,
) -> tuple[Any, Any, FoldData]:
    """Build, seed and train one fold's model (best weights restored).

    ``targets`` replaces ``ds.targets`` for training/validation (e.g. a
    shuffled-target control); predictions never use targets.
    """
    tr = config.training
    fd = prepare_fold(ds, split, config.features.scaler)
    y = ds.targets if targets is None else targets
    train_b = make_batches(fd.scaled, fd.fit_rows, ds.asset, y, ds.lookback)
    val_b = make_batches(fd.scaled, fd.val_rows, ds.asset, y, ds.lookback)
    seed = tr.seed + split.fold
    torch.manual_seed(seed)
    model = build_fold_model(config, ds.n_features, comp.tasks, len(ds.symbols))
    result = fit(
        model,
        comp.weighting,
        comp.tasks,
        train_b,
        val_b,
        epochs=tr.epochs,
        batch_size=tr.batch_size,
        lr=tr.lr,
        weight_decay=tr.weight_decay,
        grad_clip=tr.grad_clip,
        patience=tr.patience,
        seed=seed,
        fold=split.fold,
        progress=progress,
    )
    return model, result, fd


def resolve_purge(ds: Dataset, purge: int | None) -> int:
    """The purge of the folds: ``walk_forward.purge_bars``, else ``ds.horizon``.

    A purge shorter than the dataset's own largest horizon would let targets peek into the
    next slice, so it is refused.
    """
    if purge is None:
        return ds.horizon
    if purge < ds.horizon:
        raise ConfigError(
            f"walk-forward purge {purge} is shorter than the largest task horizon {ds.horizon}: "
            "targets would overlap the next slice"
        )
    return int(purge)


def splits_for(config: Config, ds: Dataset) -> list[Split]:
    """The configured walk-forward folds over the dataset's time axis.

    ``walk_forward.purge_bars`` replaces the default purge, the dataset's largest task
    horizon; it may only be larger. ``mtl-bt compare`` gives the single-task baseline the
    MTL config's largest horizon there, so every variant shares the folds.
    """
    tr, wf = config.training, config.walk_forward
    return walk_forward_splits(
        len(ds.axis),
        train_bars=wf.train_bars,
        test_bars=wf.test_bars,
        step_bars=wf.step_bars,
        purge=resolve_purge(ds, wf.purge_bars),
        embargo=wf.embargo_bars,
        val_fraction=tr.val_fraction,
        scheme=wf.scheme,
        max_folds=wf.max_folds,
        warmup=max(ds.warmup.values()),
    )


def train_walk_forward(
    config: Config,
    frames: Mapping[str, pd.DataFrame],
    out_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    *,
    log: Callable[[str], None] | None = None,
    folds: Collection[int] | None = None,
    reuse_dataset: bool = False,
) -> TrainResult:
    """Train one model per walk-forward fold; return (and write) OOS predictions etc.

    ``frames``: ``{symbol: canonical frame}`` (``mtl_bt.data.load_frames``).
    With ``out_dir``: checkpoints/fold_XXX.pt, train_log.csv, predictions.parquet,
    fold_metrics.csv, folds.json, config.toml (see docs/training.md).
    ``folds``: train only these fold numbers (``mtl-bt compare`` runs one job per fold and
    joins them with ``merge_trained``); each fold's model is the same either way.
    ``reuse_dataset``: reuse this process's features and targets of the same data and
    settings (``dataset.cached_dataset``; compare's fold jobs), identical results.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(config.training.threads)  # the same default as run and compare: 1
    try:
        return _train_walk_forward(config, frames, out_dir, progress, log, folds, reuse_dataset)
    finally:
        torch.set_num_threads(threads)


def _train_walk_forward(
    config: Config,
    frames: Mapping[str, pd.DataFrame],
    out_dir: str | os.PathLike[str] | None,
    progress: bool,
    log: Callable[[str], None] | None,
    only: Collection[int] | None = None,
    reuse_dataset: bool = False,
) -> TrainResult:
    t0 = time.perf_counter()
    comp = build_components(config)
    check_causal(comp.feature_spec, comp.tasks, frames)  # third-party features and tasks
    build = cached_dataset if reuse_dataset else build_dataset
    ds = build(frames, comp.feature_spec, comp.tasks, comp.lookback)
    splits = splits_for(config, ds)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_text(out / "config.toml", dumps(config))
    names = [t.name for t in comp.tasks]
    tasks_plain = [ckpt.plain(vars(t.spec)) for t in comp.tasks]
    config_plain = config.model_dump(mode="json")
    preds: list[pd.DataFrame] = []
    logs: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    folds: list[dict[str, Any]] = []
    paths: list[Path] = []
    models: list[ckpt.Checkpoint] = []
    if only is not None:
        unknown = sorted(set(only) - {sp.fold for sp in splits})
        if unknown:
            raise ConfigError(f"folds {unknown} do not exist; the walk-forward has {len(splits)}")
    for split in splits:
        if only is not None and split.fold not in only:
            continue  # another job trains it
        meta = fold_metadata(ds, split)
        model, result, fd = train_fold(config, comp, ds, split, progress=progress)
        test_rows, scaler = fd.test_rows, fd.scaler
        test_b = make_batches(fd.scaled, test_rows, ds.asset, None, ds.lookback)
        logs.extend(result.log)
        pred = predict_raw(model, comp.tasks, test_b)
        frame = pd.DataFrame(
            {
                "datetime": pd.DatetimeIndex(ds.times[test_rows], tz="UTC"),
                "symbol": np.asarray(ds.symbols, dtype=object)[ds.asset[test_rows]],
                "fold": split.fold,
            }
        )
        for name in names:
            frame[name] = pred[name]
        for j, name in enumerate(names):
            frame[f"target_{name}"] = ds.targets[test_rows, j].astype(np.float64)
        preds.append(frame)
        metrics.extend(fold_metric_rows(split.fold, comp.tasks, frame))
        meta.update(
            n_fit=len(fd.fit_rows),
            n_val=len(fd.val_rows),
            n_test=len(test_rows),
            n_test_with_targets=int(ds.trainable[test_rows].sum()),
            best_epoch=result.best_epoch,
            epochs_run=result.epochs_run,
            best_val_score=result.best_val_score if math.isfinite(result.best_val_score) else None,
            seconds=round(result.seconds, 3),
        )
        folds.append(meta)
        checkpoint = ckpt.Checkpoint(
            state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
            architecture=config.model.architecture,
            init_kwargs=model.init_kwargs,
            config=config_plain,
            feature_spec=comp.feature_spec.to_dict(),
            feature_columns=ds.feature_columns,
            tasks=tasks_plain,
            scaler=scaler.to_dict(),
            symbols=ds.symbols,
            fold={k: v for k, v in meta.items() if k != "positions"},
            versions=ckpt.versions(),
            lookback=ds.lookback,
        )
        models.append(checkpoint)
        if out is not None:
            path = out / "checkpoints" / f"fold_{split.fold:03d}.pt"
            ckpt.save(path, checkpoint)
            paths.append(path)
        result_so_far = _result(preds, logs, metrics, folds, paths, names, ds, out, t0, splits)
        if out is not None:
            write_outputs(out, result_so_far)
        if log is not None:
            log(_fold_line(meta, metrics, names))
    final = _result(preds, logs, metrics, folds, paths, names, ds, out, t0, splits)
    final.models = models
    return final


def fold_metric_rows(fold: int, tasks: Sequence[Any], frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each task's metrics on one fold's test rows (``frame``: a ``<task>`` prediction and a
    ``target_<task>`` column per task; pairs with a non-finite side are dropped), as rows of
    ``fold_metrics.csv``. One place, so baselines are scored exactly as the run is."""
    rows: list[dict[str, Any]] = []
    for task in tasks:
        p, y = frame[task.name].to_numpy(), frame[f"target_{task.name}"].to_numpy()
        ok = np.isfinite(y) & np.isfinite(p)
        values = task.metrics(p[ok], y[ok]) if ok.sum() >= 2 else {}
        for metric, value in values.items():
            rows.append(
                {
                    "fold": fold,
                    "task": task.name,
                    "metric": metric,
                    "value": float(value),
                    "n": int(ok.sum()),
                }
            )
    return rows


def fold_numbers(config: Config, frames: Mapping[str, pd.DataFrame]) -> list[int]:
    """The fold numbers ``train_walk_forward`` would train (builds the dataset, trains nothing).

    The features are computed once per process for every task set (``compare`` counts the
    folds of each variant: the MTL model and every single-task model)."""
    comp = build_components(config)
    check_causal(comp.feature_spec, comp.tasks, frames)  # third-party features and tasks
    features = cached_features(frames, comp.feature_spec)
    ds = build_dataset(frames, comp.feature_spec, comp.tasks, comp.lookback, features=features)
    return [split.fold for split in splits_for(config, ds)]


def merge_trained(fold_dirs: Sequence[Path], out: Path) -> TrainResult:
    """Join the output folders of per-fold ``train_walk_forward(..., folds=[k])`` runs of one
    config into one run folder ``out`` (tables, checkpoints, folds.json), as if trained in one
    go, and return its ``TrainResult``."""
    docs = [json.loads((d / "folds.json").read_text()) for d in fold_dirs]
    order = sorted(range(len(docs)), key=lambda i: docs[i]["folds"][0]["fold"])
    dirs = [fold_dirs[i] for i in order]
    docs = [docs[i] for i in order]
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    paths = []
    for d in dirs:
        for src in sorted((d / "checkpoints").glob("fold_*.pt")):
            write_bytes(out / "checkpoints" / src.name, src.read_bytes())
            paths.append(out / "checkpoints" / src.name)
    summary = dict(docs[0]["summary"])
    summary["folds_done"] = sum(doc["summary"]["folds_done"] for doc in docs)
    summary["seconds"] = round(sum(doc["summary"]["seconds"] for doc in docs), 3)
    result = TrainResult(
        folds=[f for doc in docs for f in doc["folds"]],
        checkpoints=paths,
        predictions=pd.concat(
            [pd.read_parquet(d / "predictions.parquet") for d in dirs], ignore_index=True
        ),
        train_log=pd.concat([pd.read_csv(d / "train_log.csv") for d in dirs], ignore_index=True),
        fold_metrics=pd.concat(
            [pd.read_csv(d / "fold_metrics.csv") for d in dirs], ignore_index=True
        ),
        task_names=list(summary["tasks"]),
        symbols=list(summary["symbols"]),
        out_dir=out,
        summary=summary,
    )
    write_outputs(out, result)
    return result


def _fold_line(meta: dict[str, Any], metrics: list[dict[str, Any]], names: list[str]) -> str:
    parts = [
        f"fold {meta['fold']}: test {meta['test_start'][:16]}..{meta['test_end'][:16]}",
        f"{meta['n_fit']} train rows, {_epochs(meta['epochs_run'], meta['best_epoch'])}",
    ]
    for m in metrics:
        if m["fold"] == meta["fold"] and m["metric"] in ("ic", "auc", "corr", "correlation"):
            parts.append(f"{m['task']} {m['metric']}={m['value']:.3f}")
    return ", ".join(parts)


def _result(preds, logs, metrics, folds, paths, names, ds, out, t0, splits) -> TrainResult:
    predictions = (
        pd.concat(preds, ignore_index=True)
        if preds
        else pd.DataFrame(columns=["datetime", "symbol", "fold", *names])
    )
    summary = {
        "symbols": ds.symbols,
        "tasks": names,
        "feature_columns": ds.feature_columns,
        "purge": splits[0].purge if splits else ds.horizon,
        "lookback": ds.lookback,
        "bars_on_axis": len(ds.axis),
        "warmup_rows_dropped": ds.warmup,
        "rows_without_full_lookback": ds.no_window,
        "rows_without_targets": int((~ds.trainable).sum()),
        "folds_planned": len(splits),
        "folds_done": len(folds),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return TrainResult(
        folds=list(folds),
        checkpoints=list(paths),
        predictions=predictions,
        train_log=pd.DataFrame(logs),
        fold_metrics=pd.DataFrame(metrics, columns=["fold", "task", "metric", "value", "n"]),
        task_names=names,
        symbols=ds.symbols,
        out_dir=out,
        summary=summary,
    )


def write_outputs(out: Path, result: TrainResult) -> None:
    """Write the tables of ``result`` into ``out`` (each file atomically)."""
    atomic_write(out / "train_log.csv", lambda p: result.train_log.to_csv(p, index=False))
    atomic_write(out / "fold_metrics.csv", lambda p: result.fold_metrics.to_csv(p, index=False))
    atomic_write(
        out / "predictions.parquet", lambda p: result.predictions.to_parquet(p, index=False)
    )
    doc = {"summary": result.summary, "folds": result.folds}
    write_text(out / "folds.json", json.dumps(doc, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {value!r}")


def _epochs(run: int, best: int) -> str:
    """``3 epochs (best: epoch 2)``: epochs counted from 1 in text (``best_epoch`` in the
    files is 0-based, like ``train_log.csv``'s ``epoch``)."""
    return f"{run} epoch{'s' if run != 1 else ''} (best: epoch {best + 1})"
