"""Every scheme trains the shared-bottom model on the bundled BTC/USDT hourly bars,
driven exactly like the trainer drives it (two folds, epoch hooks, AdamW + clipping)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mtl_bt import registry

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = [
    ROOT / "mtl_bt" / "data" / "sample" / "BTC_USDT-1h.csv.gz",
    ROOT.parent / "shared" / "data" / "crypto_1h" / "BTC_USDT-1h.csv.gz",
]
TASKS = ["direction@1", "return@1", "volatility@1", "volume@1"]
SCHEMES = "cagrad curriculum dwa equal fixed gradnorm mgda pcgrad rlw uncertainty".split()


@pytest.fixture(scope="module")
def data():
    path = next((p for p in CANDIDATES if p.exists()), None)
    if path is None:
        pytest.fail(f"bundled data not found in {CANDIDATES}")
    frame = pd.read_csv(path).iloc[:3000]
    r = np.log(frame["close"]).diff()
    logv = np.log(frame["volume"] + 1.0)
    # causal features: bar t uses bars <= t only
    feats = pd.concat(
        [r.shift(i).rename(f"r{i}") for i in range(4)]
        + [(logv - logv.rolling(24).mean()).rename("v")],
        axis=1,
    )
    nxt = r.shift(-1)
    targets = pd.DataFrame(
        {
            "direction@1": (nxt > 0).astype(float),
            "return@1": nxt,
            "volatility@1": nxt.abs(),
            "volume@1": logv.shift(-1) - logv.rolling(24).mean(),
        }
    )
    ok = feats.notna().all(axis=1) & targets.notna().all(axis=1)
    x = feats[ok].to_numpy()
    y = targets[ok].to_numpy()
    x = (x - x.mean(0)) / x.std(0)
    scale = y.std(0)
    scale[0] = 1.0  # direction stays 0/1
    y = y / scale
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def _model(in_features: int, specs):
    return registry.create("architecture", "shared_bottom", in_features, specs)


def _losses(out, y):
    return {
        "direction@1": F.binary_cross_entropy_with_logits(out["direction@1"], y[:, 0]),
        "return@1": F.mse_loss(out["return@1"], y[:, 1]),
        "volatility@1": F.mse_loss(out["volatility@1"], y[:, 2]),
        "volume@1": F.mse_loss(out["volume@1"], y[:, 3]),
    }


@pytest.mark.parametrize("name", SCHEMES)
def test_scheme_trains_shared_bottom_without_nan(name, data, tools):
    torch.manual_seed(0)
    x, y = data
    model = _model(x.shape[1], tools.specs(TASKS))
    weighting = tools.build(name)
    start = [p.detach().clone() for p in model.parameters()]
    n = len(x)
    for fold, (lo, hi) in enumerate([(0, n // 2), (n // 4, 3 * n // 4)]):
        weighting.reset()
        params = list(model.parameters()) + list(weighting.parameters())
        opt = torch.optim.AdamW(params, lr=1e-3)
        model.train()
        for epoch in range(3):
            weighting.on_epoch_start(epoch)
            sums = {t: 0.0 for t in TASKS}
            batches = range(lo, hi, 256)
            for b in batches:
                losses = _losses(model(x[b : b + 256]), y[b : b + 256])
                opt.zero_grad()
                total = weighting.backward(losses, model)
                assert math.isfinite(float(total)), (name, fold, epoch)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                for p in params:
                    assert p.grad is None or torch.isfinite(p.grad).all()
                opt.step()
                for t in TASKS:
                    sums[t] += float(losses[t].detach()) / len(batches)
            weighting.on_epoch_end(epoch, sums)
            assert all(math.isfinite(v) for v in sums.values())
            assert all(math.isfinite(v) for v in weighting.weights().values())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(start, model.parameters(), strict=True))
