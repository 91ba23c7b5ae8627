"""``check_<kind>(name, ...)``: run a plugin's contract and laws, the way mtl-bt uses it.

Every check builds the item through the registry (so the plugin must be registered:
installed, or added with ``mtl_bt.registry.register_plugin``), exercises it on small
real inputs and raises ``ConformanceError`` naming the plugin, the law and where it
broke. On success it returns a ``Report`` (what was checked). A plugin's whole test::

    from mtl_bt.testing import check_feature

    def test_my_feature():
        check_feature("my_feature", window=10)
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from mtl_bt import registry
from mtl_bt.errors import PluginError
from mtl_bt.testing import lookahead
from mtl_bt.testing.data import garch_bars


class ConformanceError(PluginError, AssertionError):
    """A plugin broke its contract; the message names plugin, law and where."""


@dataclass
class Report:
    """What a check verified (laws that held) for one plugin item."""

    kind: str
    name: str
    laws: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def ok(self, law: str) -> None:
        self.laws.append(law)


def _fail(kind: str, name: str, message: str) -> ConformanceError:
    return ConformanceError(f"{kind} {name!r}: {message}")


# -- features ----------------------------------------------------------------------


def feature_compute(name: str, params: dict[str, Any]):
    """``frame -> raw feature columns`` for one feature, validated like a config."""
    from mtl_bt.features import FeatureSpec, compute

    spec = FeatureSpec(names=[name], params={name: dict(params)} if params else {})
    return spec, (lambda frame: compute(frame, spec))


def check_feature(
    name: str,
    frame: pd.DataFrame | None = None,
    *,
    cuts: Sequence[int] | None = None,
    warmup_tol: float = lookahead.WARMUP_TOL,
    **params: Any,
) -> Report:
    """Columns and alignment as declared; no state between calls; finite after the
    declared warm-up; prefix invariance and perturbed future at several cut points; no
    dependence on the start of the history after the declared warm-up; streamed bar by
    bar it equals the vectorised rows (what ``mtl-bt check`` and live feeds need). A
    feature that reads other frames goes to ``check_cross_feature``, ``frame`` joined by
    the synthetic symbols AAA, BBB and CCC."""
    report = Report("feature", name)
    spec, fn = feature_compute(name, params)
    if spec.reads():  # it reads other frames: the laws across frames, in a run of symbols
        frames = None  # AAA, BBB, CCC: synthetic, on ragged calendars
        if frame is not None:
            from mtl_bt.testing.cross import ragged_frames

            symbol = str(frame.attrs.get("symbol", "frame"))
            frames = {symbol: frame, **ragged_frames(index=pd.DatetimeIndex(frame.index))}
        return check_cross_feature(name, frames, **params)
    frame = garch_bars(800, seed=7, freq="1h") if frame is None else frame
    declared = spec.warmup()
    if len(frame) < declared + 30:
        raise _fail("feature", name, f"needs {declared} warm-up bars; pass a longer frame")
    full = fn(frame)
    report.ok("columns and index as declared")
    cuts = list(cuts) if cuts is not None else lookahead.default_cuts(len(frame), declared)
    _check_state(name, spec, frame, cuts, report)
    for findings in (
        lookahead.prefix_findings(fn, frame, cuts, full),
        lookahead.future_findings(fn, frame, cuts, full),
    ):
        if findings:
            raise _fail("feature", name, f"looks ahead: {findings[0]}")
    report.ok(f"prefix invariance at cuts {cuts}")
    report.ok("perturbed future leaves the past unchanged")
    from mtl_bt.features import drop_warmup

    try:
        drop_warmup(full, spec, str(frame.attrs.get("symbol", "frame")))
    except Exception as exc:
        raise _fail(
            "feature", name, f"not finite after its declared warm-up {declared}: {exc}"
        ) from None
    report.ok(f"finite after the declared warm-up ({declared} bars)")
    measured = lookahead.measured_warmup(
        fn, frame, lookahead.default_starts(len(frame), declared), full, warmup_tol
    )
    close = lookahead.measured_warmup(
        fn, frame, lookahead.default_starts(len(frame), declared), full, lookahead.WARMUP_NOTE_TOL
    )
    report.details["warmup"] = {"declared": declared, "measured": measured, "settled": close}
    slow = {c: b for c, b in close.items() if b is None or b > declared}
    if slow:
        report.notes.append(
            f"start of history still visible (> {lookahead.WARMUP_NOTE_TOL} std) after the "
            f"declared warm-up {declared}: {slow} bars"
        )
    for column, bars in measured.items():
        if bars is None:
            raise _fail(
                "feature",
                name,
                f"column {column!r} depends on where the history starts and never settles "
                "(cumulative or start-anchored values differ between a backtest and training); "
                "use trailing windows",
            )
        if bars > declared:
            raise _fail(
                "feature",
                name,
                f"column {column!r} depends on the start of the history for {bars} bars, but "
                f"the feature declares a warm-up of {declared}; declare warmup >= {bars}",
            )
    report.ok("start of history forgotten within the declared warm-up")
    _check_streaming(name, spec, frame, full, report)
    return report


def _check_state(
    name: str, spec: Any, frame: pd.DataFrame, cuts: Sequence[int], report: Report
) -> None:
    """The same bars give the same rows whatever was called before (``testing.state``)."""
    from mtl_bt.features.base import declared_columns
    from mtl_bt.features.spec import feature_fn
    from mtl_bt.testing import state

    params = spec.resolved_params()[name]
    fn = feature_fn(name)
    columns = declared_columns(name, fn, params)
    found = state.state_findings(fn, params, frame, list(cuts)[len(cuts) // 2], columns)
    if found:
        raise _fail("feature", name, f"{found[0]}")
    if found is None:
        report.notes.append("state between calls not checked: defined in a function or __main__")
    else:
        report.ok("no state between calls (fresh module copies, two call orders)")


def _check_streaming(
    name: str, spec: Any, frame: pd.DataFrame, full: pd.DataFrame, report: Report
) -> None:
    """Streamed bar by bar (``mtl_bt.features.streaming``: replay, live feeds, paper) the
    rows equal the vectorised ones within ``parity.TOL`` (relative), as ``mtl-bt check``
    requires; a difference names its cause (``parity.stream_cause``)."""
    from mtl_bt.features.streaming import stream_frame
    from mtl_bt.testing import parity

    want = full.to_numpy(np.float64)
    got = stream_frame(spec, frame)
    bad = ~parity._close(got, want)
    if bad.any():
        rows, cols = np.nonzero(bad)
        i, j = int(rows[0]), int(cols[0])
        column = str(full.columns[j])
        cause = parity.stream_cause(spec, name, frame, i, column, float(got[i, j]))
        raise _fail(
            "feature",
            name,
            f"streaming = preloaded: column {column!r} streams to {float(got[i, j])!r} but "
            f"computes {float(want[i, j])!r} at bar {i} ({frame.index[i]}); {cause}",
        )
    report.ok(f"streaming = preloaded (relative {parity.TOL:g})")


def check_cross_feature(
    name: str,
    frames: dict[str, pd.DataFrame] | None = None,
    *,
    target: str | None = None,
    cuts: Sequence[int] | None = None,
    **params: Any,
) -> Report:
    """A feature that reads other frames (``@feature(reads=...)``), on a run of ``frames``
    (default: three hourly synthetic symbols AAA, BBB, CCC on different calendars): prefix
    invariance with every frame cut, a perturbed future of each frame, for every target
    symbol (or ``target``); finite after the warm-up of every frame; the source's history
    start forgotten within the declared warm-up; streamed rows equal to ``compute`` (within
    ``lookahead.RTOL``: a pandas ``rolling`` over a window differs in the last bits)."""
    from mtl_bt.features import drop_warmup
    from mtl_bt.testing import cross

    report = Report("feature", name)
    spec, _ = feature_compute(name, params)
    if not spec.reads():
        raise _fail("feature", name, "reads no other frame; check it with check_feature")
    frames = cross.named(cross.ragged_frames() if frames is None else frames)
    from mtl_bt.features import compute

    targets = [target] if target is not None else list(frames)
    for t in targets:
        full = compute(frames[t], spec, frames)
        report.ok(f"columns and index as declared on {t}")
        found = cross.cross_findings(spec, frames, t, cuts)
        if found:
            raise _fail("feature", name, f"looks ahead on {t}: {found[0]}")
        try:
            drop_warmup(full, spec, t)
        except Exception as exc:
            raise _fail("feature", name, f"not finite after the frames' warm-up: {exc}") from None
    report.ok("prefix invariance with every frame cut")
    report.ok("a perturbed future of any frame leaves the past unchanged")
    report.ok("finite after every frame's warm-up")
    from mtl_bt.features.base import declared_warmup
    from mtl_bt.features.spec import feature_fn

    declared = declared_warmup(name, feature_fn(name), spec.resolved_params()[name])
    measured = cross.source_warmup(name, spec, frames)
    report.details["warmup"] = {"declared": declared, "measured": measured}
    for column, bars in measured.items():
        if bars is None or bars > declared:
            raise _fail(
                "feature",
                name,
                f"column {column!r} depends on the start of its source's history for "
                f"{'ever' if bars is None else bars} source bars, but the feature declares a "
                f"warm-up of {declared}",
            )
    report.ok("source history start forgotten within the declared warm-up")
    bad = cross.stream_findings(spec, frames)
    if bad:
        raise _fail("feature", name, f"streams differently from compute: {bad[0]}")
    report.ok(f"streamed rows equal compute's (relative {lookahead.RTOL:g})")
    return report


# -- tasks -------------------------------------------------------------------------


def check_task(
    name: str, horizon: int = 1, frame: pd.DataFrame | None = None, **options: Any
) -> Report:
    """Target aligned to the frame, NaN where the future is unknown, finite elsewhere,
    built from bars t-lookback..t+h only and really from t+1..t+h; loss finite and
    differentiable; transform keeps the shape; metrics are finite floats."""
    from mtl_bt.tasks import build_targets, build_tasks

    report = Report("task", name)
    [task] = build_tasks([{"name": name, "horizons": [horizon], "options": options}])
    label = task.name
    frame = garch_bars(500, seed=3, freq="1h") if frame is None else frame
    targets = build_targets(frame, [task])
    y = targets[label].to_numpy(np.float64)

    def build(f: pd.DataFrame) -> pd.Series:
        return build_targets(f, [task])[label]

    lookback = int(task.lookback)
    cuts = lookahead.default_cuts(len(frame), lookback + horizon, count=3)
    findings = lookahead.target_findings(build, frame, horizon, lookback, cuts)
    if findings:
        raise _fail("task", label, str(findings[0]))
    report.ok("uses bars t-lookback..t+h only and looks h bars ahead")
    inner = y[lookback : len(y) - horizon]
    if not np.isfinite(inner).all():
        row = lookback + int(np.argmax(~np.isfinite(inner)))
        raise _fail(
            "task",
            label,
            f"target is {float(y[row])!r} at bar {row} ({frame.index[row]}), where "
            "its past and future are both in the data; targets must be finite there",
        )
    report.ok("aligned; finite where defined")

    ok = np.isfinite(y)
    target = torch.tensor(y[ok][:64], dtype=torch.float32)
    output = torch.zeros(len(target), requires_grad=True)
    loss = task.loss(output, target)
    if loss.ndim != 0 or not torch.isfinite(loss):
        raise _fail("task", label, f"loss is {loss!r}; expected a finite scalar")
    loss.backward()
    if output.grad is None or not torch.isfinite(output.grad).all():
        raise _fail("task", label, "loss has no finite gradient w.r.t. the model output")
    report.ok("loss is a finite differentiable scalar")
    with torch.no_grad():
        pred = task.transform(torch.linspace(-1, 1, len(target)))
    if tuple(pred.shape) != (len(target),):
        raise _fail("task", label, f"transform changed the shape to {tuple(pred.shape)}")
    metrics = task.metrics(pred.double().numpy(), target.double().numpy())
    if not isinstance(metrics, dict) or not all(isinstance(v, float) for v in metrics.values()):
        raise _fail("task", label, f"metrics must be a dict of floats, got {metrics!r}")
    report.ok("transform and metrics")
    return report


# -- architectures -----------------------------------------------------------------

#: the task set architectures are checked with (several kinds and levels)
CHECK_TASKS = (("return", 1, 1), ("direction", 1, 0), ("volatility", 5, 0))


def _specs(tasks: Sequence[Any] | None = None):
    """Task specs to check with: ``tasks`` (TaskSpecs or names like ``"return@5"``), else
    ``CHECK_TASKS``."""
    from mtl_bt.tasks.base import TaskSpec

    if tasks is None:
        return [TaskSpec(f"{k}@{h}", k, h, 1, level) for k, h, level in CHECK_TASKS]
    out = []
    for t in tasks:
        if isinstance(t, TaskSpec):
            out.append(t)
        else:
            kind, _, h = str(t).partition("@")
            out.append(TaskSpec(str(t), kind, int(h or 1)))
    return out


def check_architecture(
    name: str, in_features: int = 7, *, tasks: Sequence[Any] | None = None, **options: Any
) -> Report:
    """Outputs named exactly as the tasks, shape (batch,), finite; parameters partitioned
    into shared and per-task; a task's loss never reaches another task's parameters;
    every head's output layer found (head-bias initialisation); rebuilt from plain data
    (``weights_only`` checkpoint) it gives identical outputs; ``model.dropout`` honoured
    in training mode or refused when built."""
    from mtl_bt.models import MTLModel
    from mtl_bt.models.build import build_model_from_dict
    from mtl_bt.models.guards import check_outputs, example_input

    report = Report("architecture", name)
    specs = _specs(tasks)
    names = [s.name for s in specs]
    torch.manual_seed(0)
    model = registry.get("architecture", name)(in_features, specs, **options)
    if not isinstance(model, MTLModel):
        raise _fail("architecture", name, f"built a {type(model).__name__}, not an MTLModel")
    x, asset = example_input(model, 16, torch.Generator().manual_seed(1))
    model.eval()
    out = model(x, asset)
    try:
        check_outputs(name, out, names, batch=len(x))
    except PluginError as exc:
        raise ConformanceError(str(exc)) from None
    report.ok("one finite (batch,) output per task, named as the tasks")
    params = {id(p): p for p in model.parameters() if p.requires_grad}
    shared = {id(p) for p in model.shared_parameters()}
    owned: dict[int, str] = {}
    for task in names:
        for p in model.task_parameters(task):
            if id(p) in owned:
                raise _fail(
                    "architecture",
                    name,
                    f"a parameter belongs to both {owned[id(p)]!r} and {task!r}",
                )
            owned[id(p)] = task
    if shared & set(owned):
        raise _fail("architecture", name, "a parameter is both shared and task-specific")
    if set(params) != shared | set(owned):
        raise _fail(
            "architecture", name, "some trainable parameters are neither shared nor a task's"
        )
    report.ok("parameters partitioned into shared and per-task")
    model.train()
    out = model(x, asset)
    for task in names:
        others = [p for t in names if t != task for p in model.task_parameters(t)]
        if not others:
            continue
        grads = torch.autograd.grad(
            out[task].pow(2).mean(), others, retain_graph=True, allow_unused=True
        )
        leaked = [g for g in grads if g is not None and bool(g.abs().sum() > 0)]
        if leaked:
            raise _fail(
                "architecture", name, f"task {task!r}'s loss reaches another task's parameters"
            )
    report.ok("task isolation")
    model.eval()
    for task in names:
        try:
            layer = model.output_layer(task)
        except NotImplementedError as exc:
            raise _fail(
                "architecture",
                name,
                f"output_layer({task!r}) is not found ({exc}); "
                "return the head's last Linear from task_modules(), or override output_layer",
            ) from None
        before = model(x, asset)[task].detach()
        with torch.no_grad():
            layer.bias.add_(1.0)
        after = model(x, asset)[task].detach()
        with torch.no_grad():
            layer.bias.sub_(1.0)
        if not torch.allclose(after - before, torch.ones_like(before), atol=1e-4):
            raise _fail(
                "architecture",
                name,
                f"output_layer({task!r}) is not the layer that produces {task!r}",
            )
    report.ok("output layer of every head (head-bias initialisation)")
    buffer = io.BytesIO()
    torch.save({"model": model.describe(), "state": model.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    rebuilt = build_model_from_dict(saved["model"])
    rebuilt.load_state_dict(saved["state"])
    rebuilt.eval()
    again = rebuilt(x, asset)
    for task in names:
        if not torch.equal(again[task], model(x, asset)[task]):
            raise _fail("architecture", name, f"rebuilt from plain data, output {task!r} differs")
    report.ok("rebuilt from plain data (weights_only) with identical outputs")
    _check_dropout(name, in_features, specs, options, report)
    return report


def _check_dropout(
    name: str, in_features: int, specs: list[Any], options: dict[str, Any], report: Report
) -> None:
    """``model.dropout`` (a common option, default 0.1) is honoured - with 0.5 the
    training-mode outputs vary from pass to pass - or refused with a ``ConfigError`` when
    the model is built; never silently ignored."""
    from mtl_bt.errors import ConfigError
    from mtl_bt.models.guards import example_input

    torch.manual_seed(0)
    try:
        model = registry.get("architecture", name)(
            in_features, specs, **{**options, "dropout": 0.5}
        )
    except ConfigError:
        report.ok("dropout > 0 refused when built")
        return
    x, asset = example_input(model, 16, torch.Generator().manual_seed(1))
    model.train()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        first = model(x, asset)
        torch.manual_seed(2)
        second = model(x, asset)
    if all(torch.equal(first[t.name], second[t.name]) for t in specs):
        raise _fail(
            "architecture",
            name,
            "ignores model.dropout: built with dropout=0.5 its training-mode outputs never "
            "vary; apply self.dropout (e.g. nn.Dropout(self.dropout), or "
            "mtl_bt.models.layers.mlp(..., self.dropout)), or raise ConfigError in __init__ "
            "when self.dropout > 0",
        )
    report.ok("model.dropout honoured in training mode")


# -- weightings --------------------------------------------------------------------


def _run_weighting(
    name: str, options: dict[str, Any], steps: int, seed: int, tasks: Sequence[Any] | None
) -> tuple[list, list, Any]:
    from mtl_bt.plugins.architectures.shared_bottom import SharedBottom

    specs = _specs(tasks)
    names = [s.name for s in specs]
    weighting = registry.get("weighting", name)(names, **options)
    weighting.reset()
    torch.manual_seed(seed)
    model = SharedBottom(5, specs, hidden=[8], dropout=0.0)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 5, generator=gen)
    y = torch.randn(32, len(names), generator=gen)
    opt = torch.optim.SGD(list(model.parameters()) + list(weighting.parameters()), lr=0.01)
    totals, weights = [], [weighting.weights()]
    for epoch in range(2):
        weighting.on_epoch_start(epoch)
        epoch_losses = []
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            out = model(x)
            losses = {n: (out[n] - y[:, j]).pow(2).mean() * (j + 1) for j, n in enumerate(names)}
            total = weighting.backward(losses, model)
            if not math.isfinite(float(total)) and all(
                math.isfinite(float(v.detach())) for v in losses.values()
            ):
                raise _fail(
                    "weighting",
                    name,
                    f"combined loss is {float(total)!r} at step {len(totals)} although every "
                    "task loss is finite",
                )
            for p in model.parameters():
                if p.grad is not None and not torch.isfinite(p.grad).all():
                    raise _fail("weighting", name, "left a non-finite gradient on the model")
            opt.step()
            totals.append(float(total))
            weights.append(weighting.weights())
            epoch_losses.append({n: float(v.detach()) for n, v in losses.items()})
        weighting.on_epoch_end(
            epoch, {n: float(np.mean([e[n] for e in epoch_losses])) for n in names}
        )
    return totals, weights, weighting


def check_weighting(
    name: str, steps: int = 4, *, tasks: Sequence[Any] | None = None, **options: Any
) -> Report:
    """Finite combined loss and weights for every task, finite gradients; ``reset()``
    restores the start (the same run twice after reset is identical)."""
    report = Report("weighting", name)
    totals, weights, weighting = _run_weighting(name, options, steps, seed=0, tasks=tasks)
    names = weighting.task_names
    for step, (total, w) in enumerate(zip(totals, weights[1:], strict=True)):
        if not math.isfinite(total):
            raise _fail("weighting", name, f"combined loss is {total!r} at step {step}")
        if set(w) != set(names) or not all(math.isfinite(float(v)) for v in w.values()):
            raise _fail(
                "weighting",
                name,
                f"weights() at step {step} is {w!r}; expected a finite weight per task {names}",
            )
    report.ok("finite combined loss, weights and gradients")
    start = weights[0]
    weighting.reset()
    if weighting.weights() != start:
        raise _fail(
            "weighting",
            name,
            f"reset() gives weights {weighting.weights()!r}, not the start {start!r}",
        )
    again, _, _ = _run_weighting(name, options, steps, seed=0, tasks=tasks)
    if again != totals:
        raise _fail("weighting", name, "two runs from reset() differ; keep all state in reset()")
    report.ok("reset() restores the start")
    return report


# -- signals -----------------------------------------------------------------------

SIGNAL_TASKS = ["return@1", "return@5", "direction@1", "volatility@5"]


def check_signal(name: str, task_names: Sequence[str] = SIGNAL_TASKS, **options: Any) -> Report:
    """Finite weights, one per asset of the batch, within ``max_weight``,
    ``max_gross_leverage`` and the shorting rule, for batches of 1..8 assets and NaN
    predictions; the same inputs give the same weights."""
    from mtl_bt.signals.clip import violations

    report = Report("signal", name)
    rule = registry.get("signal", name)(**options)
    heads = rule.heads(list(task_names)) if hasattr(rule, "heads") else {}
    unknown = [t for t in heads.values() if t and t not in task_names]
    if unknown:
        raise _fail(
            "signal", name, f"heads() names {unknown}, not among the tasks {list(task_names)}"
        )
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 8):
        for max_weight, gross, short in ((0.5, 1.0, True), (0.3, 1.0, False), (1.0, 2.0, True)):
            preds = {
                t: (
                    rng.uniform(0.2, 0.8, n)
                    if t.startswith("direction")
                    else np.abs(rng.normal(0.01, 0.005, n)) + 1e-4
                    if t.startswith("volatility")
                    else rng.normal(0, 0.02, n)
                )
                for t in task_names
            }
            if n > 1:
                preds[task_names[0]][0] = np.nan
            context = dict(
                commission=0.001,
                slippage=0.0005,
                max_weight=max_weight,
                max_gross_leverage=gross,
                allow_short=short,
                n_assets=n,
                periods_per_year=np.full(n, 8760.0),
                realised_vol=np.full(n, 0.01),
                symbols=[f"A{i}" for i in range(n)],
                current_weights=np.zeros(n),
            )
            if "ewma_vol" in tuple(getattr(rule, "context_inputs", ()) or ()):
                context["ewma_vol"] = np.full(n, 0.012)  # what the strategy would add
            w = np.asarray(
                rule.weights({k: v.copy() for k, v in preds.items()}, **context), dtype=np.float64
            )
            if w.shape != (n,):
                raise _fail("signal", name, f"returned shape {w.shape} for a batch of {n} assets")
            if not np.isfinite(w).all():
                raise _fail("signal", name, f"returned non-finite weights {w.tolist()}")
            broken = violations(w, max_weight, gross, short)
            if broken:
                raise _fail("signal", name, f"weights {np.round(w, 4).tolist()} break {broken}")
            twice = np.asarray(rule.weights({k: v.copy() for k, v in preds.items()}, **context))
            if not np.array_equal(twice, w):
                raise _fail("signal", name, "the same inputs gave different weights")
    report.ok("finite weights within max_weight, max_gross_leverage and shorting, deterministic")
    return report


# -- sources -----------------------------------------------------------------------


def check_source(
    name: str, symbols: Sequence[str], timeframe: str | None = None, **options: Any
) -> Report:
    """Built with no arguments; ``fetch`` returns every symbol's frame in the canonical
    shape (UTC index named ``datetime``, sorted, unique, float OHLCV, attrs) with
    plausible timestamps (not 1970: seconds/ms/µs mixed up) and the bar size asked for."""
    from mtl_bt.data.source import COLUMNS, INDEX_NAME, Source
    from mtl_bt.data.timeframe import parse_timeframe
    from mtl_bt.data.validate import infer_timeframe

    report = Report("source", name)
    source = registry.get("source", name)()
    if not isinstance(source, Source):
        raise _fail(
            "source",
            name,
            f"factory built a {type(source).__name__}, not a mtl_bt.data.source.Source",
        )
    frames = source.fetch(list(symbols), timeframe=timeframe, **options)
    missing = [s for s in symbols if s not in frames]
    if missing:
        raise _fail("source", name, f"fetch returned no frame for {missing}")
    now = pd.Timestamp.now(tz="UTC")
    for symbol in symbols:
        f = frames[symbol]
        where = f"{symbol}"
        idx = f.index
        if not isinstance(idx, pd.DatetimeIndex) or idx.tz is None or str(idx.tz) != "UTC":
            raise _fail("source", name, f"{where}: index must be a UTC DatetimeIndex")
        if idx.name != INDEX_NAME:
            raise _fail(
                "source", name, f"{where}: index named {idx.name!r}, expected {INDEX_NAME!r}"
            )
        if not idx.is_monotonic_increasing or not idx.is_unique:
            raise _fail("source", name, f"{where}: index must be sorted and unique")
        if list(f.columns) != list(COLUMNS) or not all(f[c].dtype == np.float64 for c in COLUMNS):
            raise _fail(
                "source",
                name,
                f"{where}: columns {list(f.columns)} (dtypes {list(f.dtypes.astype(str))}), expected float64 {list(COLUMNS)}",
            )
        if len(idx) and (
            idx[0] < pd.Timestamp("1980-01-01", tz="UTC") or idx[-1] > now + pd.Timedelta(days=2)
        ):
            raise _fail(
                "source",
                name,
                f"{where}: timestamps {idx[0]} .. {idx[-1]} are implausible (seconds, ms and µs mixed up?)",
            )
        for key in ("symbol", "timeframe", "source"):
            if key not in f.attrs:
                raise _fail("source", name, f"{where}: frame.attrs lacks {key!r}")
        if timeframe and len(idx) > 3:
            got = infer_timeframe(idx)
            if parse_timeframe(got) != parse_timeframe(timeframe):
                raise _fail("source", name, f"{where}: bars are {got} apart, asked for {timeframe}")
    report.ok("canonical frames with plausible timestamps")
    return report
