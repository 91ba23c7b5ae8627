"""Training throughput: our trainer (``fit``) vs a minimal hand-written PyTorch loop.

Same model (shared_bottom built by ``build_fold_model`` with the same seed), same
tensors (the fold's scaled training rows from the real dataset pipeline), same
batch size, same AdamW (lr, weight decay), same gradient clipping, same number
of epochs, equal weighting (the sum of task losses). The trainer gets no
validation rows here, so both sides do exactly the same work per sample and the
difference is the trainer's own bookkeeping (loss logging, weighting hooks,
best-state copies). Samples per second = epochs x rows / seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmarks.common import alternate, loadavg, median


def prepare(n_assets: int = 4, bars: int = 6000, hidden: tuple[int, ...] = (64, 32)) -> dict:
    """The real dataset -> fold -> scaled batches path on synthetic hourly bars."""
    from benchmarks.bench_backtest import TRAIN_START, model_config
    from mtl_bt.data.synthetic import garch_bars
    from mtl_bt.training.dataset import build_dataset
    from mtl_bt.training.pipeline import build_components, prepare_fold, splits_for
    from mtl_bt.training.trainer import make_batches

    config = model_config(hidden=hidden)
    config.walk_forward.train_bars = int(bars * 0.8)
    config.walk_forward.test_bars = max(1, bars - int(bars * 0.8) - 100)
    frames = {
        f"T{i}": garch_bars(bars, seed=200 + i, freq="1h", start=TRAIN_START, symbol=f"T{i}")
        for i in range(n_assets)
    }
    comp = build_components(config)
    ds = build_dataset(frames, comp.feature_spec, comp.tasks, comp.lookback)
    split = splits_for(config, ds)[0]
    fd = prepare_fold(ds, split, config.features.scaler)
    train_b = make_batches(fd.scaled, fd.fit_rows, ds.asset, ds.targets, ds.lookback)
    no_val = make_batches(fd.scaled, np.empty(0, dtype=np.int64), ds.asset, ds.targets, 1)
    return {"config": config, "comp": comp, "ds": ds, "train": train_b, "val": no_val}


def _model(prep: dict, seed: int) -> torch.nn.Module:
    from mtl_bt.training.pipeline import build_fold_model

    torch.manual_seed(seed)
    ds = prep["ds"]
    return build_fold_model(prep["config"], ds.n_features, prep["comp"].tasks, len(ds.symbols))


def run_trainer(prep: dict, epochs: int, seed: int = 0) -> int:
    """Our ``fit`` with equal weighting; returns samples trained."""
    from mtl_bt import registry
    from mtl_bt.training.trainer import fit

    tr = prep["config"].training
    model = _model(prep, seed)
    tasks = prep["comp"].tasks
    weighting = registry.create("weighting", "equal", [t.name for t in tasks])
    res = fit(
        model,
        weighting,
        tasks,
        prep["train"],
        prep["val"],
        epochs=epochs,
        batch_size=tr.batch_size,
        lr=tr.lr,
        weight_decay=tr.weight_decay,
        grad_clip=tr.grad_clip,
        patience=epochs + 1,
        seed=seed,
    )
    if res.epochs_run != epochs:
        raise RuntimeError(f"trainer ran {res.epochs_run} epochs, expected {epochs}")
    return epochs * len(prep["train"])


def run_hand(prep: dict, epochs: int, seed: int = 0) -> int:
    """What a user would write by hand: shuffle, slice, forward, sum losses, step."""
    tr = prep["config"].training
    model = _model(prep, seed)
    tasks = prep["comp"].tasks
    data = prep["train"]
    x_all, a_all, y_all = data.x, data.asset, data.y
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=tr.lr, weight_decay=tr.weight_decay, foreach=True)
    gen = torch.Generator().manual_seed(seed)
    n, bs = len(data), tr.batch_size
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, bs):
            idx = perm[start : start + bs]
            if len(idx) < 2:  # BatchNorm-safe, as the trainer
                continue
            out = model(x_all[idx], a_all[idx])
            y = y_all[idx]
            loss = sum(t.loss(out[t.name], y[:, j]) for j, t in enumerate(tasks))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, tr.grad_clip)
            opt.step()
    return epochs * n


def measure(
    n_assets: int = 4, bars: int = 6000, epochs: int = 3, repeats: int = 5, log: Any = print
) -> dict[str, Any]:
    """Median samples/s of both loops (alternating) and the trainer's overhead."""
    prep = prepare(n_assets, bars)
    runs = {
        "trainer": lambda: run_trainer(prep, epochs),
        "hand_loop": lambda: run_hand(prep, epochs),
    }
    load0 = loadavg()
    times, last = alternate(runs, repeats, warmup=1)
    med = {k: median(v) for k, v in times.items()}
    samples = last["trainer"]
    sps = {k: samples / v for k, v in med.items()}
    overhead = med["trainer"] / med["hand_loop"] - 1.0
    cfg = prep["config"]
    out = {
        "rows": len(prep["train"]),
        "features": prep["ds"].n_features,
        "tasks": [t.name for t in prep["comp"].tasks],
        "architecture": cfg.model.architecture,
        "hidden": list(cfg.model.hidden),
        "batch_size": cfg.training.batch_size,
        "epochs_per_run": epochs,
        "repeats": repeats,
        "seconds": med,
        "all_seconds": times,
        "samples_per_second": sps,
        "overhead": overhead,
        "load_average": [load0, loadavg()],
    }
    log(
        f"  training: trainer {sps['trainer']:.0f} samples/s, hand loop "
        f"{sps['hand_loop']:.0f} samples/s, overhead {overhead:+.1%}"
    )
    return out
