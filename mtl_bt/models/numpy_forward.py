"""Inference without torch: numpy forward passes built from a model's trained weights.

Why: one eager torch forward pass over a batch of 1-50 rows costs hundreds of
microseconds of per-op dispatch, far more than its arithmetic. Backtrader calls
the model every bar, so the per-bar cost of a strategy was mostly torch's. Here
each layer becomes a closure over plain numpy arrays (weights transposed once,
eval-mode BatchNorm folded into the preceding Linear, all single-output heads
stacked into one matrix), so a forward pass is a few dozen small numpy calls.

A ``NumpyForward`` maps ``(x, asset_ids)`` to ``{task: raw output}`` exactly as
``model.eval()(x, asset)`` does (float32, the same operations in the same order
up to floating-point rounding; ``tests/models/test_numpy_forward.py`` checks every
built-in architecture and input stage against torch). Architectures opt in by
implementing ``MTLModel.numpy_predict``; any other model keeps the torch path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mtl_bt.models.layers import Experts, Gate


def _openblas_thread_calls() -> list[tuple[Any, Any]]:
    """``(get, set)`` thread-count functions of every OpenBLAS loaded in this process
    (numpy's wheels bundle ``scipy_openblas``), found through ``/proc/self/maps`` as
    threadpoolctl does; empty where there is none or no such file (not Linux)."""
    import ctypes

    try:
        with open("/proc/self/maps") as fh:
            paths = {
                line.split()[-1]
                for line in fh
                if "openblas" in line.lower() and line.split()[-1].startswith("/")
            }
    except OSError:
        return []
    calls = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                    calls.append((get, put))
                    break
            else:
                continue
            break
    return calls


def blas_threads(n: int) -> Callable[[], None]:
    """Run numpy's OpenBLAS on ``n`` threads; returns the function that restores the
    previous counts. For the small products of inference, OpenBLAS's threads only cost:
    a (800, 14) x (14, 48) product took 0.2-2.5 ms with its default 2 threads on a
    loaded 2-core machine and 34-52 us on one."""
    calls = _openblas_thread_calls()
    before = [get() for get, _ in calls]
    for _, put in calls:
        put(int(n))

    def restore() -> None:
        for (_, put), k in zip(calls, before, strict=True):
            put(k)

    return restore


#: ``f(h) -> h'`` on float32 arrays
Layer = Callable[[np.ndarray], np.ndarray]
#: ``f(x, asset_ids) -> {task: raw output (batch,) or (batch, out_dim)}``
NumpyForward = Callable[[np.ndarray, "np.ndarray | None"], dict[str, np.ndarray]]

_F32 = np.float32


def array(t: torch.Tensor) -> np.ndarray:
    """A parameter or buffer as its own float32 numpy array (no shared memory)."""
    return np.array(t.detach().cpu().numpy(), dtype=_F32, copy=True)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, _F32(0.0), out=x)  # x is always a fresh intermediate here


def sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.exp(-x)
    out += _F32(1.0)
    return np.reciprocal(out, out=out)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (max-shifted, as torch does)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


class InputFold:
    """A first layer's view of the input stage's output ``h = [x * a + b, table[ids]]``
    (scaling and embedding each optional), kept unassembled.

    ``h @ w + bias`` (any first Linear, expert layer or gate) is linear in ``h``, so it
    equals ``x @ (a * w_x) + (b @ w_x + bias + table @ w_e)[ids]``: one matmul, one
    gather and one add instead of the scaling, the concatenation, the matmul and the bias
    (ten numpy calls for one row). The folded weights are computed in float64 once per
    weight matrix and kept. An architecture that does anything else with ``h`` gets the
    assembled array (``Folded.__array__``), so a fold is never wrong, only not faster.
    """

    def __init__(
        self,
        a: np.ndarray | None = None,
        b: np.ndarray | None = None,
        table: np.ndarray | None = None,
    ) -> None:
        self.a = None if a is None else np.asarray(a, np.float64)
        self.b = None if b is None else np.asarray(b, np.float64)
        #: float32 copies for ``assemble`` (the scaling exactly as the predictor does it)
        self._a32 = None if a is None else np.asarray(a, _F32)
        self._b32 = None if b is None else np.asarray(b, _F32)
        self.table = table
        self._cache: dict[tuple[int, int], tuple[Any, ...]] = {}

    def fold(self, w: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(w_x', c)`` for a weight ``w`` (in, out) or stacked (K, in, out) and its ``bias``
        ((out,) or (K, 1, out)): ``h @ w + bias == x @ w_x' + c[ids]`` (``c`` without
        ``[ids]`` when there is no embedding)."""
        key = (id(w), id(bias))
        hit = self._cache.get(key)
        if hit is None or hit[0] is not w or hit[1] is not bias:
            w64 = np.asarray(w, np.float64)
            stacked = w64.ndim == 3
            width = w64.shape[-2] - (0 if self.table is None else self.table.shape[1])
            wx, we = w64[..., :width, :], w64[..., width:, :]
            c = np.zeros((w64.shape[0], 1, w64.shape[-1]) if stacked else w64.shape[-1])
            if bias is not None:
                c = c + np.asarray(bias, np.float64).reshape(c.shape)
            if self.b is not None:
                bw = np.matmul(self.b, wx)  # (out,) or (K, out)
                c = c + (bw[:, None, :] if stacked else bw)
            if self.a is not None:
                wx = self.a[:, None] * wx
            if self.table is not None:
                c = c + np.matmul(self.table.astype(np.float64), we)  # (..., n_assets, out)
            hit = self._cache[key] = (
                w,
                bias,
                np.ascontiguousarray(wx, dtype=_F32),
                np.ascontiguousarray(c, dtype=_F32),
            )
        return hit[2], hit[3]

    def assemble(self, x: np.ndarray, ids: np.ndarray | None) -> np.ndarray:
        """``h`` itself (what a layer that is not a matmul reads)."""
        if self.a is not None:
            x = x * self._a32
            x += self._b32
        if self.table is None:
            return x
        out = np.empty((x.shape[0], x.shape[1] + self.table.shape[1]), _F32)
        out[:, : x.shape[1]] = x
        out[:, x.shape[1] :] = self.table[ids]
        return out


class Folded:
    """``h`` of one call: the raw ``x`` and asset ids under an ``InputFold``."""

    __slots__ = ("x", "ids", "fold")

    def __init__(self, x: np.ndarray, ids: np.ndarray | None, fold: InputFold) -> None:
        self.x, self.ids, self.fold = x, ids, fold

    @property
    def ndim(self) -> int:
        return self.x.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        extra = 0 if self.fold.table is None else self.fold.table.shape[1]
        return (*self.x.shape[:-1], self.x.shape[-1] + extra)

    def affine(self, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        wx, c = self.fold.fold(w, bias)
        out = _matmul(self.x, wx)
        out += c if self.ids is None else c.take(self.ids, -2)
        return out

    def __matmul__(self, w: np.ndarray) -> np.ndarray:
        return self.affine(w, None)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.fold.assemble(self.x, self.ids)
        return out if dtype is None else out.astype(dtype)


def affine(x: Any, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``x @ w + bias`` as a fresh array; ``x`` may be a ``Folded`` input.

    ``ndarray.dot`` for 2-D weights: about half the cost of ``@`` (a gufunc) per call
    at this size (``_matmul``).
    """
    if type(x) is Folded:
        return x.affine(w, bias)
    out = _matmul(x, w)
    if bias is not None:
        out += bias
    return out


def _matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w``: ``ndarray.dot`` for a 2-D input and weight, else ``np.matmul`` (``dot``
    on more dimensions does not use BLAS; one 2-D product of a (batch * time, in) input
    was tried: large enough for OpenBLAS to start threads, 10x slower on a loaded machine)."""
    if x.ndim == 2 and w.ndim == 2:
        return x.dot(w)
    return np.matmul(x, w)


def _affine(weight: np.ndarray, bias: np.ndarray | None) -> Layer:
    """``x @ weight + bias`` (weight already (in, out))."""
    return lambda x: affine(x, weight, bias)


def linear_params(
    module: nn.Linear, then: nn.Module | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(weight (in, out), bias (out,))`` in float64; an eval-mode BatchNorm after it folded in."""
    w = module.weight.detach().double().numpy().T.copy()
    b = (
        module.bias.detach().double().numpy().copy()
        if module.bias is not None
        else np.zeros(w.shape[1])
    )
    if isinstance(then, nn.BatchNorm1d):
        # eval BatchNorm: (y - mean) / sqrt(var + eps) * gamma + beta, per column
        scale = 1.0 / np.sqrt(then.running_var.detach().double().numpy() + then.eps)
        if then.weight is not None:
            scale = scale * then.weight.detach().double().numpy()
        shift = -then.running_mean.detach().double().numpy() * scale
        if then.bias is not None:
            shift = shift + then.bias.detach().double().numpy()
        w, b = w * scale, b * scale + shift
    return w, b


def linear(module: nn.Linear, then: nn.Module | None = None) -> Layer:
    """``module`` (and an eval-mode BatchNorm after it, folded in) as one affine map."""
    w, b = linear_params(module, then)
    return _affine(np.ascontiguousarray(w, dtype=_F32), b.astype(_F32))


def _norm_params(module: nn.LayerNorm) -> tuple[float, np.ndarray | None, np.ndarray | None]:
    if len(module.normalized_shape) != 1:
        raise NotImplementedError("LayerNorm over more than the last axis")
    gamma = None if module.weight is None else array(module.weight)
    beta = None if module.bias is None else array(module.bias)
    return float(module.eps), gamma, beta


def normalise(d: np.ndarray, mean_of: np.ndarray, eps: np.float32) -> np.ndarray:
    """``d / sqrt(mean(d**2) + eps)`` in place, for already centred ``d`` (LayerNorm's core).

    ``mean_of`` is a ``(width, 1)`` column of ``1/width``: a matmul is several
    times cheaper than ``ndarray.mean`` on rows this short.
    """
    var = (d * d).dot(mean_of)
    var += eps
    np.sqrt(var, out=var)
    d /= var
    return d


def linear_layer_norm(module: nn.Linear, norm: nn.LayerNorm) -> Layer:
    """Linear then LayerNorm. The mean subtraction is linear, so it is folded into the
    weights (columns centred); the rest is ``normalise`` and the affine of the norm."""
    w, b = linear_params(module)
    w = np.ascontiguousarray(w - w.mean(axis=1, keepdims=True), dtype=_F32)
    b = (b - b.mean()).astype(_F32)
    eps, gamma, beta = _norm_params(norm)
    mean_of = np.full((w.shape[1], 1), 1.0 / w.shape[1], _F32)
    eps32 = _F32(eps)

    def f(x: np.ndarray) -> np.ndarray:
        d = affine(x, w, b)
        normalise(d, mean_of, eps32)
        if gamma is not None:
            d *= gamma
        if beta is not None:
            d += beta
        return d

    return f


def layer_norm(module: nn.LayerNorm) -> Layer:
    """LayerNorm over the last axis (biased variance, as torch)."""
    eps, gamma, beta = _norm_params(module)
    eps32 = _F32(eps)

    def f(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        mean_of = np.full((x.shape[-1], 1), 1.0 / x.shape[-1], _F32)
        d = x - x.dot(mean_of)
        normalise(d, mean_of, eps32)
        if gamma is not None:
            d *= gamma
        if beta is not None:
            d += beta
        return d

    return f


def chain(layers: Sequence[Layer]) -> Layer:
    layers = list(layers)
    if not layers:
        return lambda x: x
    if len(layers) == 1:
        return layers[0]

    def f(x: np.ndarray) -> np.ndarray:
        for layer in layers:
            x = layer(x)
        return x

    return f


def _layers(module: nn.Module) -> list[nn.Module]:
    """The leaf modules of a (nested) ``nn.Sequential`` in order, eval no-ops dropped."""
    if isinstance(module, nn.Sequential):
        return [leaf for m in module for leaf in _layers(m)]
    if isinstance(module, nn.Dropout | nn.Identity):
        return []
    return [module]


def sequential(module: nn.Module) -> Layer:
    """An ``nn.Sequential`` of Linear / LayerNorm / BatchNorm / ReLU / Dropout / Identity.

    Raises ``NotImplementedError`` on any other module (the caller keeps torch).
    """
    mods = _layers(module)
    layers: list[Layer] = []
    i = 0
    while i < len(mods):
        m = mods[i]
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(m, nn.Linear) and isinstance(nxt, nn.BatchNorm1d):
            layers.append(linear(m, nxt))
            i += 2
            continue
        if isinstance(m, nn.Linear) and isinstance(nxt, nn.LayerNorm):
            layers.append(linear_layer_norm(m, nxt))
            i += 2
            continue
        if isinstance(m, nn.Linear):
            layers.append(linear(m))
        elif isinstance(m, nn.LayerNorm):
            layers.append(layer_norm(m))
        elif isinstance(m, nn.ReLU):
            # in place on a fresh intermediate; a leading ReLU must not touch the caller's input
            layers.append(relu if layers else lambda x: np.maximum(x, _F32(0.0)))
        else:
            raise NotImplementedError(f"no numpy version of {type(m).__name__}")
        i += 1
    return chain(layers)


def parallel(modules: Sequence[nn.Module]) -> Layer:
    """K MLPs of one shape (Linear [+ BatchNorm] -> ReLU, ...), one per task, run at once.

    Input ``(batch, in)`` (the same for every MLP) or ``(K, batch, in)``; output
    ``(K, batch, out)``. Each layer is one batched matmul over the task axis
    instead of K small ones. Raises ``NotImplementedError`` when the MLPs differ
    in structure or hold a layer it does not stack (LayerNorm).
    """
    per_task = [_layers(m) for m in modules]
    kinds = [[type(m) for m in mods] for mods in per_task]
    if any(k != kinds[0] for k in kinds):
        raise NotImplementedError("the MLPs differ in structure")
    steps: list[tuple[str, Any]] = []
    mods = list(zip(*per_task, strict=True))
    i = 0
    while i < len(mods):
        group = mods[i]
        if isinstance(group[0], nn.Linear):
            bn = (
                mods[i + 1]
                if i + 1 < len(mods) and isinstance(mods[i + 1][0], nn.BatchNorm1d)
                else None
            )
            params = [linear_params(lin, bn[k] if bn else None) for k, lin in enumerate(group)]
            w = np.stack([p[0] for p in params]).astype(_F32)  # (K, in, out)
            b = np.stack([p[1] for p in params]).astype(_F32)[:, None, :]  # (K, 1, out)
            steps.append(("affine", (w, b)))
            i += 2 if bn else 1
        elif isinstance(group[0], nn.ReLU):
            steps.append(("relu", None))
            i += 1
        else:
            raise NotImplementedError(f"cannot stack {type(group[0]).__name__} over tasks")

    def f(x: np.ndarray) -> np.ndarray:
        fresh = False
        for kind, params in steps:
            if kind == "affine":
                w, b = params
                x = affine(x, w, b)  # (batch, in) broadcasts over the task axis
                fresh = True
            else:
                x = relu(x) if fresh else np.maximum(x, _F32(0.0))
        return x

    return f


def experts(module: Experts) -> Layer:
    """``(batch, in)`` or ``(batch, n, in)`` -> ``(batch, n, out)`` (ReLU after every layer)."""
    stages = [(array(layer.weight), array(layer.bias)) for layer in module.layers]

    # the stacked (in, n*out) weight of a 2-D input is precomputed once per layer
    packed = [
        (w.transpose(1, 0, 2).reshape(w.shape[1], -1).copy(), b.reshape(-1).copy(), w.shape)
        for w, b in stages
    ]

    def fast(x: np.ndarray) -> np.ndarray:
        for k, (w2, b2, shape) in enumerate(packed):
            n, _, o = shape
            if x.ndim == 2:
                x = relu(affine(x, w2, b2)).reshape(-1, n, o)
            else:
                w, b = stages[k]
                out = np.matmul(np.asarray(x).transpose(1, 0, 2), w).transpose(1, 0, 2) + b
                x = relu(out)
        return x

    return fast


def gates(modules: Sequence[Gate]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """K softmax gates reading one input, each mixing the same experts, all at once:
    ``(x (batch, in), experts (batch, E, d)) -> (K, batch, d)``.

    One matmul gives every gate's logits; ``exp`` then a block-diagonal matmul of
    ones gives each gate's normaliser (no per-row max or sum, the slow numpy calls
    at this size). Where that overflows or underflows, the max-shifted softmax
    (torch's) is computed instead, so results never differ from torch's.
    """
    params = [linear_params(g.linear) for g in modules]
    w = np.ascontiguousarray(np.concatenate([p[0] for p in params], axis=1), dtype=_F32)
    b = np.concatenate([p[1] for p in params]).astype(_F32)
    k, n = len(modules), params[0][0].shape[1]
    block = np.kron(np.eye(k), np.ones((n, n))).astype(_F32)

    def f(x: np.ndarray, e: np.ndarray) -> np.ndarray:
        logits = affine(x, w, b)
        g = np.exp(logits)  # (an np.errstate here would cost more than the whole gate)
        g /= g.dot(block)
        if not np.isfinite(g).all():  # exp overflowed or every exp underflowed
            g = softmax(logits.reshape(-1, k, n))
        return np.matmul(g.reshape(-1, k, n), e).transpose(1, 0, 2)

    return f


def gate(module: Gate) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """One gate: ``(x (batch, in), experts (batch, n, d)) -> (batch, d)``."""
    mix = gates([module])
    return lambda x, e: mix(x, e)[0]


def stacked_heads(modules: Sequence[nn.Linear]) -> Layer:
    """K Linear heads, head k reading ``xs[k]``: ``(K, batch, d) -> (K, batch, out)``."""
    params = [linear_params(m) for m in modules]
    w = np.stack([p[0] for p in params]).astype(_F32)
    b = np.stack([p[1] for p in params]).astype(_F32)[:, None, :]

    def f(xs: np.ndarray) -> np.ndarray:
        out = np.matmul(xs, w)
        out += b
        return out

    return f


def per_task(names: Sequence[str], out: np.ndarray) -> dict[str, np.ndarray]:
    """``(K, batch, out_dim)`` -> ``{name: (batch,) or (batch, out_dim)}``."""
    if out.shape[-1] == 1:
        return {n: out[k, :, 0] for k, n in enumerate(names)}
    return {n: out[k] for k, n in enumerate(names)}


def heads(
    modules: dict[str, nn.Module], names: Sequence[str], out_dims: dict[str, int]
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Task heads reading one input: Linear heads stacked into one matmul, others one by one."""
    if all(isinstance(modules[n], nn.Linear) for n in names):
        params = [linear_params(modules[n]) for n in names]
        both = _affine(
            np.ascontiguousarray(np.concatenate([p[0] for p in params], axis=1), dtype=_F32),
            np.concatenate([p[1] for p in params]).astype(_F32),
        )
        spans, at = [], 0
        for n in names:
            spans.append((n, at, at + out_dims[n]))
            at += out_dims[n]

        def stacked(z: np.ndarray) -> dict[str, np.ndarray]:
            out = both(z)
            return {n: out[:, s] if e - s == 1 else out[:, s:e] for n, s, e in spans}

        return stacked
    layers = {n: sequential(modules[n]) for n in names}
    return lambda z: {n: squeeze(layers[n](z)) for n in names}


def squeeze(value: np.ndarray) -> np.ndarray:
    """``MTLModel._out``: ``(batch, 1) -> (batch,)``."""
    return value[:, 0] if value.shape[-1] == 1 else value


# -- the shared input stage ------------------------------------------------
def gru(module: nn.GRU) -> Layer:
    """Last hidden state of a one-layer, unidirectional, batch-first GRU."""
    if module.num_layers != 1 or module.bidirectional or not module.batch_first:
        raise NotImplementedError("numpy GRU: one layer, unidirectional, batch_first only")
    w_ih = array(module.weight_ih_l0).T.copy()  # (in, 3H): gates r, z, n
    w_hh = array(module.weight_hh_l0).T.copy()
    b_ih = array(module.bias_ih_l0) if module.bias else np.zeros(w_ih.shape[1], _F32)
    b_hh = array(module.bias_hh_l0) if module.bias else np.zeros(w_hh.shape[1], _F32)
    hidden = module.hidden_size
    w_hh_rz, w_hh_n = (
        np.ascontiguousarray(w_hh[:, : 2 * hidden]),
        np.ascontiguousarray(w_hh[:, 2 * hidden :]),
    )
    b_hh_rz, b_hh_n = b_hh[: 2 * hidden], b_hh[2 * hidden :]

    def f(x: np.ndarray) -> np.ndarray:
        gi = affine(x, w_ih, b_ih)  # (batch, time, 3H)
        h = np.zeros((x.shape[0], hidden), _F32)
        for t in range(x.shape[1]):
            g = gi[:, t]
            rz = h.dot(w_hh_rz)
            rz += b_hh_rz
            rz += g[:, : 2 * hidden]
            rz = sigmoid(rz)
            r, z = rz[:, :hidden], rz[:, hidden:]
            hn = h.dot(w_hh_n)
            hn += b_hh_n
            hn *= r
            hn += g[:, 2 * hidden :]
            n = np.tanh(hn, out=hn)
            h = n + z * (h - n)  # (1 - z) * n + z * h
        return h

    return f


def causal_conv(module: nn.Module) -> Layer:
    """``CausalConv`` (dilated, left-padded Conv1d + ReLU stack): output at the last step."""
    layers = []
    for conv in module.convs:
        w = array(conv.weight)  # (out, in, kernel)
        taps = [np.ascontiguousarray(w[:, :, k].T) for k in range(w.shape[2])]
        bias = array(conv.bias) if conv.bias is not None else np.zeros(w.shape[0], _F32)
        layers.append((taps, bias, int(conv.dilation[0])))
    kernel = len(layers[0][0])

    def f(x: np.ndarray) -> np.ndarray:
        h = x  # (batch, time, channels)
        steps = x.shape[1]
        for taps, bias, dilation in layers:
            pad = (kernel - 1) * dilation
            hp = np.concatenate([np.zeros((h.shape[0], pad, h.shape[2]), _F32), h], axis=1)
            out = hp[:, 0:steps] @ taps[0]
            for k in range(1, kernel):
                out += hp[:, k * dilation : k * dilation + steps] @ taps[k]
            out += bias
            h = relu(out)
        return h[:, -1]

    return f


def _bad_ids(ids: np.ndarray, n_assets: int) -> ValueError:
    return ValueError(
        f"asset ids must be in 0..{n_assets - 1} (n_assets={n_assets}); "
        f"got {int(ids.min())}..{int(ids.max())}"
    )


def input_stage(
    stage: nn.Module, scale: tuple[np.ndarray, np.ndarray] | None = None
) -> Callable[[np.ndarray, np.ndarray | None], Any]:
    """``InputStage``: encoder ("none" | "gru" | "conv") then the asset embedding.

    Returns ``h`` as a ``Folded`` input (see ``InputFold``) where it has something to
    fold: the asset embedding, and with ``scale=(a, b)`` the scaler's ``x * a + b``
    (then ``x`` is the raw features); the encoder's first matmul or the model's first
    layers absorb them.
    """
    from mtl_bt.models.input_stage import CausalConv

    if stage.encoder is None:
        encode: Layer | None = None
    elif isinstance(stage.encoder, nn.GRU):
        encode = gru(stage.encoder)
    elif isinstance(stage.encoder, CausalConv):
        encode = causal_conv(stage.encoder)
    else:
        raise NotImplementedError(f"no numpy version of encoder {type(stage.encoder).__name__}")
    scaled = None if scale is None else InputFold(scale[0], scale[1])
    if stage.embedding is None:
        if encode is None:
            return (
                (lambda x, asset=None: x)
                if scaled is None
                else (lambda x, asset=None: Folded(x, None, scaled))
            )
        if scaled is None:
            return lambda x, asset=None: encode(x)
        return lambda x, asset=None: encode(Folded(x, None, scaled))
    table = array(stage.embedding.weight)
    n_assets = table.shape[0]
    # no encoder: the scaling and the embedding fold into the same first layer
    embed = InputFold(*(scale if encode is None and scale is not None else (None, None)), table)

    def f(x: np.ndarray, asset: np.ndarray | None) -> Folded:
        if encode is not None:
            x = encode(x if scaled is None else Folded(x, None, scaled))
        if asset is None:
            raise ValueError(
                "this model has an asset embedding: pass asset ids (batch,) as `asset`"
            )
        ids = np.asarray(asset, dtype=np.int64).reshape(-1)
        if ids.shape[0] != x.shape[0]:
            raise ValueError(f"got {ids.shape[0]} asset ids for a batch of {x.shape[0]} rows")
        # one reduction checks both ends: a negative id (which would wrap around when
        # gathered) is above every valid one as an unsigned number
        if ids.size and ids.view(np.uint64).max() >= n_assets:
            raise _bad_ids(ids, n_assets)
        return Folded(x, ids, embed)

    return f
