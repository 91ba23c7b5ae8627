"""Time per training step of every weighting scheme relative to ``equal``.

Same model (shared_bottom), same batch, K = 4 tasks; one step = forward, task
losses, zero_grad, ``weighting.backward``, grad clipping, AdamW step. Prints the
median step time per scheme over ``--repeats`` timed steps and its ratio to
``equal``. Run: ``python -m benchmarks.bench_weighting`` (or the file directly).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from mtl_bt import registry
from mtl_bt.tasks.base import TaskSpec

TASKS = ["direction@1", "return@1", "volatility@1", "volume@1"]
OPTIONS = {
    "fixed": {"weights": {t: 1.0 for t in TASKS}},
    "curriculum": {"schedule": {"return@1": {"start": 0, "ramp": 2}}},
}


def options(name: str) -> dict:
    """The options a scheme is benchmarked with: those it needs (the torchjd pack's schemes
    with required arguments, e.g. CAGrad's ``c``, when the pack is loaded), none otherwise."""
    if name in OPTIONS:
        return OPTIONS[name]
    if name.startswith("torchjd_"):
        from mtl_bt.plugins.torchjd import example_options

        return example_options(name, len(TASKS))
    return {}


def _losses(out: dict[str, torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "direction@1": F.binary_cross_entropy_with_logits(
            out["direction@1"], (y[:, 0] > 0).float()
        ),
        "return@1": F.mse_loss(out["return@1"], y[:, 1]),
        "volatility@1": F.mse_loss(out["volatility@1"], y[:, 2].abs()),
        "volume@1": F.mse_loss(out["volume@1"], y[:, 3]),
    }


class Runner:
    """One scheme's model, optimizer and fixed batch; ``step()`` times one training step."""

    def __init__(self, name: str, features: int, hidden: list[int], batch: int, **extra) -> None:
        torch.manual_seed(0)
        specs = [TaskSpec(t, t.split("@")[0], 1) for t in TASKS]
        self.model = registry.create(
            "architecture", "shared_bottom", features, specs, hidden=hidden
        )
        self.weighting = registry.create("weighting", name, TASKS, **{**options(name), **extra})
        self.params = list(self.model.parameters()) + list(self.weighting.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=1e-3)
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(batch, features, generator=g)
        self.y = torch.randn(batch, 4, generator=g)
        self.weighting.on_epoch_start(0)
        self.times: list[float] = []

    def step(self, record: bool = True) -> None:
        t0 = time.perf_counter()
        losses = _losses(self.model(self.x), self.y)
        self.opt.zero_grad()
        self.weighting.backward(losses, self.model)
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        if record:
            self.times.append(time.perf_counter() - t0)


def measure(
    schemes: list[str],
    features: int,
    hidden: list[int],
    batch: int,
    repeats: int,
    warmup: int,
    grad_method: str = "loop",
) -> dict[str, float]:
    """Median seconds per step per scheme. Schemes run round-robin, one step each in
    turn, so a change in machine load hits every scheme alike."""
    gradient_level = {"pcgrad", "mgda", "cagrad"}
    methods = ["loop", "batched"] if grad_method == "both" else [grad_method]
    runners: dict[str, Runner] = {}
    for name in dict.fromkeys(["equal", *schemes]):
        if name not in gradient_level:
            runners[name] = Runner(name, features, hidden, batch)
            continue
        for method in methods:
            label = name if len(methods) == 1 else f"{name}[{method}]"
            runners[label] = Runner(name, features, hidden, batch, grad_method=method)
    for i in range(warmup + repeats):
        for runner in runners.values():
            runner.step(record=i >= warmup)
    return {name: statistics.median(r.times) for name, r in runners.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 32])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--grad-method",
        choices=["loop", "batched", "both"],
        default="both",
        help="per-task gradients of gradient-level schemes (both: time each)",
    )
    parser.add_argument("--schemes", nargs="+", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    schemes = args.schemes or registry.names("weighting")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}; shared_bottom "
        f"features={args.features} hidden={args.hidden} batch={args.batch} K={len(TASKS)}; "
        f"median of {args.repeats} steps (round-robin); grad_method={args.grad_method}"
    )
    times = measure(
        schemes, args.features, args.hidden, args.batch, args.repeats, args.warmup, args.grad_method
    )
    base = times["equal"]
    print(f"{'scheme':<18} {'ms/step':>8} {'x equal':>8}")
    for name, t in times.items():
        print(f"{name:<18} {t * 1e3:8.3f} {t / base:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
