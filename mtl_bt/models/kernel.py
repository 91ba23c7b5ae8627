"""Inference as one compiled call: a per-row "program" run by a numba interpreter.

Why: ``Predictor.predict`` runs every Backtrader bar on 1-50 rows. The numpy forward
pass (``numpy_forward``) is dozens of tiny numpy calls of ~0.6 us each, 50-500 us a
bar. Here a model becomes a flat table of ops over one scratch vector per row, with
every weight packed into one float32 array, and a single ``@njit`` function
(``_run``) interprets the table for every row: one call from Python per ``predict``,
no allocation per op, the arithmetic compiled.

Values live in slots ``(offset, width)`` of the per-row float32 scratch vector. Every
row runs the same instruction sequence on its own scratch and reads nothing of other
rows, so a row's outputs do not depend on the batch it came in (bit for bit): live
per-bar predictions equal precomputed whole-frame ones.

Architectures opt in with ``MTLModel.kernel_predict(prog, h)``; ``MTLModel.kernel_program``
builds the input stage (scaling, clip, encoder, asset embedding) around it. numba is
imported only when a program is compiled; without it (or with ``MTL_BT_NO_KERNEL=1``)
``compile`` returns None and the predictor uses the numpy closures, then torch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from mtl_bt.models.numpy_forward import linear_params

# opcodes (the first column of the op table)
HEADER, AFFINE, ACT, LAYER_NORM, COPY, MIX, GATE = 0, 1, 2, 3, 4, 5, 6
INPUT, EMBED, GRU, CONV, OUTPUT, SOFTMAX, DATA = 7, 8, 9, 10, 11, 12, 13
TRANSFORM = 14
#: elementwise steps of a task's output transform (``Task.kernel_transform``)
T_SCALE, T_SIGMOID, T_CLAMP, T_EXP = 0, 1, 2, 3
#: step name -> (kind, number of constants)
STEPS = {"scale": (T_SCALE, 1), "sigmoid": (T_SIGMOID, 0), "clamp": (T_CLAMP, 2), "exp": (T_EXP, 0)}
#: activations (a field of AFFINE, ACT, LAYER_NORM)
NONE, RELU, SIGMOID, TANH = 0, 1, 2, 3
_ACTS = {"none": NONE, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH}
#: int fields per op row (opcode + params)
WIDTH = 10
#: slots and weight blocks start on multiples of this many floats (64 bytes)
_ALIGN = 16


@dataclasses.dataclass(frozen=True)
class Slot:
    """``width`` floats at ``offset`` of a row's scratch vector."""

    offset: int
    width: int

    def sub(self, start: int, width: int) -> Slot:
        if start < 0 or start + width > self.width:
            raise ValueError(f"sub-slot {start}:{start + width} outside a slot of {self.width}")
        return Slot(self.offset + start, width)


def _up(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


class Program:
    """Builder of an op table and its packed weights (see the module docstring).

    Methods append ops and return the slot they write. Weights arrive as float64
    arrays (``numpy_forward.linear_params``) and are stored as float32.
    """

    def __init__(self) -> None:
        self._ops: list[list[int]] = [[HEADER, 0, 0]]
        self._weights: list[np.ndarray] = []
        self._wsize = 0
        self._size = 0
        #: (task name, first output column, width), in the order outputs were added
        self.outputs: list[tuple[str, int, int]] = []
        self._cols = 0
        #: TRANSFORM ops, appended after every other op by ``tables``
        self._transforms: list[list[int]] = []
        self.n_assets = 0
        self.n_inputs = 0

    # -- storage ------------------------------------------------------------
    def slot(self, width: int) -> Slot:
        """A fresh slot of ``width`` floats."""
        out = Slot(self._size, int(width))
        self._size += _up(max(int(width), 1))
        return out

    def _w(self, *arrays: np.ndarray) -> int:
        """Offset of ``arrays`` stored back to back (float32) in the weight vector."""
        at = self._wsize
        flat = np.concatenate([np.asarray(a, np.float64).reshape(-1) for a in arrays])
        self._weights.append(np.concatenate([flat, np.zeros(_up(len(flat)) - len(flat))]))
        self._wsize += _up(len(flat))
        return at

    def _op(self, code: int, *params: int) -> None:
        row = [code, *(int(p) for p in params)]
        if len(row) > WIDTH:
            raise ValueError("too many op parameters")
        self._ops.append(row)

    # -- ops ----------------------------------------------------------------
    def input(
        self,
        n_features: int,
        steps: int = 1,
        scale: tuple[np.ndarray, np.ndarray] | None = None,
        clip: float | None = None,
    ) -> Slot:
        """The row's raw features ``(steps, n_features)``, scaled ``x * a + b`` then
        clipped to ``[-clip, clip]`` as the predictor does (each optional)."""
        n = steps * n_features
        self.n_inputs = n
        dst = self.slot(n)
        a, b = (np.ones(n_features), np.zeros(n_features)) if scale is None else scale
        w = self._w(np.asarray(a, np.float32), np.asarray(b, np.float32))
        c = -1 if clip is None else self._w(np.float32([clip]))
        self._op(INPUT, dst.offset, n, n_features, w, c, 0 if scale is None else 1)
        return dst

    def embedding(self, table: np.ndarray, dst: Slot | None = None) -> Slot:
        """``table[asset id]`` of the row; ids outside the table stop the call."""
        n_assets, dim = table.shape
        dst = dst or self.slot(dim)
        self._check(dst, dim)
        self.n_assets = n_assets
        self._op(EMBED, dst.offset, dim, n_assets, self._w(table))
        return dst

    def affine(
        self,
        src: Slot,
        w: np.ndarray,
        b: np.ndarray | None = None,
        dst: Slot | None = None,
        act: str = "none",
    ) -> Slot:
        """``act(src @ w + b)``; ``w`` is ``(in, out)``."""
        n_in, n_out = w.shape
        self._check(src, n_in)
        dst = dst or self.slot(n_out)
        self._check(dst, n_out)
        self._distinct(src, dst)
        bias = np.zeros(n_out) if b is None else b
        self._op(AFFINE, dst.offset, src.offset, n_in, n_out, self._w(w, bias), _ACTS[act])
        return dst

    def linear(
        self, module: nn.Linear, src: Slot, then: nn.Module | None = None, dst: Slot | None = None
    ) -> Slot:
        """An ``nn.Linear`` (an eval BatchNorm after it folded in)."""
        return self.affine(src, *linear_params(module, then), dst=dst)

    def linears(self, modules: Sequence[nn.Linear], src: Slot, dst: Slot | None = None) -> Slot:
        """Several Linears reading ``src`` as one op; their outputs back to back."""
        params = [linear_params(m) for m in modules]
        w = np.concatenate([p[0] for p in params], axis=1)
        return self.affine(src, w, np.concatenate([p[1] for p in params]), dst=dst)

    def act(self, slot: Slot, kind: str) -> Slot:
        """``kind`` ("relu" | "sigmoid" | "tanh") in place; fused into the op that just
        wrote ``slot`` when it can be."""
        last = self._ops[-1]
        if last[0] in (AFFINE, LAYER_NORM) and last[1] == slot.offset and last[-1] == NONE:
            width = last[4] if last[0] == AFFINE else last[2]
            if width == slot.width:
                last[-1] = _ACTS[kind]
                return slot
        self._op(ACT, slot.offset, slot.width, _ACTS[kind])
        return slot

    def relu(self, slot: Slot) -> Slot:
        return self.act(slot, "relu")

    def layer_norm(self, slot: Slot, module: nn.LayerNorm) -> Slot:
        """``nn.LayerNorm`` over the slot, in place."""
        if tuple(module.normalized_shape) != (slot.width,):
            raise NotImplementedError("LayerNorm over anything but the slot's width")
        gamma = np.ones(slot.width) if module.weight is None else _np(module.weight)
        beta = np.zeros(slot.width) if module.bias is None else _np(module.bias)
        w = self._w(gamma, beta, np.float64([module.eps]))
        self._op(LAYER_NORM, slot.offset, slot.width, w, NONE)
        return slot

    def softmax(self, slot: Slot) -> Slot:
        """Softmax over the slot, in place (max-shifted, as torch)."""
        self._op(SOFTMAX, slot.offset, slot.width)
        return slot

    def copy(self, src: Slot, dst: Slot | None = None) -> Slot:
        dst = dst or self.slot(src.width)
        self._check(dst, src.width)
        self._distinct(src, dst)
        self._op(COPY, dst.offset, src.offset, src.width)
        return dst

    def concat(self, parts: Sequence[Slot]) -> Slot:
        """``parts`` copied back to back into a fresh slot."""
        dst = self.slot(sum(p.width for p in parts))
        at = 0
        for p in parts:
            self.copy(p, dst.sub(at, p.width))
            at += p.width
        return dst

    def mix(self, src: Slot, alpha: np.ndarray, dst: Slot | None = None) -> Slot:
        """``dst_i = sum_j alpha[i, j] src_j`` over ``k_in`` equal parts of ``src``
        (cross-stitch units)."""
        k_out, k_in = alpha.shape
        if src.width % k_in:
            raise ValueError("the slot does not split into k_in parts")
        d = src.width // k_in
        dst = dst or self.slot(k_out * d)
        self._check(dst, k_out * d)
        self._distinct(src, dst)
        self._op(MIX, dst.offset, src.offset, k_out, k_in, d, self._w(alpha))
        return dst

    def gate(
        self, logits: Slot, experts: Sequence[tuple[Slot, int]], dst: Slot | None = None
    ) -> Slot:
        """``softmax(logits) . experts``: ``experts`` is one or two ``(slot, n)`` groups of
        ``n`` back-to-back expert outputs of one width; the softmax overwrites ``logits``."""
        if not 1 <= len(experts) <= 2:
            raise ValueError("a gate mixes one or two groups of experts")
        groups = [*experts, (Slot(0, 0), 0)][:2]
        n = sum(k for _, k in groups)
        if n != logits.width:
            raise ValueError(f"{logits.width} gate logits for {n} experts")
        d = groups[0][0].width // groups[0][1]
        for s, k in groups:
            if k:
                self._check(s, k * d)
        dst = dst or self.slot(d)
        self._check(dst, d)
        (a, na), (b, nb) = groups
        self._op(GATE, dst.offset, logits.offset, a.offset, na, b.offset, nb, d)
        return dst

    def gru(self, module: nn.GRU, src: Slot, steps: int, dst: Slot | None = None) -> Slot:
        """Last hidden state of a one-layer, unidirectional, batch-first ``nn.GRU`` over
        ``src`` = ``(steps, input_size)`` (torch's gate order r, z, n)."""
        if module.num_layers != 1 or module.bidirectional or not module.batch_first:
            raise NotImplementedError("kernel GRU: one layer, unidirectional, batch_first only")
        f, hidden = module.input_size, module.hidden_size
        self._check(src, steps * f)
        dst = dst or self.slot(hidden)
        self._check(dst, hidden)
        w_ih, w_hh = _np(module.weight_ih_l0).T, _np(module.weight_hh_l0).T
        b_ih = _np(module.bias_ih_l0) if module.bias else np.zeros(3 * hidden)
        b_hh = _np(module.bias_hh_l0) if module.bias else np.zeros(3 * hidden)
        tmp = self.slot(6 * hidden)
        w = self._w(w_ih, b_ih, w_hh, b_hh)
        self._op(GRU, dst.offset, src.offset, steps, f, hidden, w, tmp.offset)
        return dst

    def causal_conv(
        self, module: nn.Module, src: Slot, steps: int, dst: Slot | None = None
    ) -> Slot:
        """``input_stage.CausalConv`` (left-padded dilated Conv1d + ReLU per layer) at the
        last step. Each layer computes only the steps the last output depends on."""
        convs = list(module.convs)
        # steps each layer's output is needed at, from the last layer down
        need: list[list[int]] = [[steps - 1]]
        for conv in reversed(convs[1:]):
            k, d = conv.kernel_size[0], conv.dilation[0]
            below = {t - j * d for t in need[0] for j in range(k)}
            need.insert(0, sorted(t for t in below if t >= 0))
        cur = src
        for conv, ts in zip(convs, need, strict=True):
            c_out, c_in, k = conv.weight.shape
            if conv.padding[0] != 0 or conv.stride[0] != 1 or conv.groups != 1:
                raise NotImplementedError("kernel conv: padding 0, stride 1, groups 1 only")
            self._check(cur, steps * c_in)
            out = self.slot(steps * c_out)
            taps = _np(conv.weight).transpose(2, 1, 0)  # (k, in, out)
            bias = _np(conv.bias) if conv.bias is not None else np.zeros(c_out)
            w = self._w(taps, bias)
            self._op(CONV, out.offset, cur.offset, c_in, c_out, w, conv.dilation[0], len(ts), k)
            for i in range(0, len(ts), WIDTH - 1):
                self._op(DATA, *ts[i : i + WIDTH - 1])
            cur = out
        last = cur.sub((steps - 1) * convs[-1].out_channels, convs[-1].out_channels)
        return last if dst is None else self.copy(last, dst)

    def sequential(self, module: nn.Module, src: Slot, dst: Slot | None = None) -> Slot:
        """An ``nn.Sequential`` of Linear / BatchNorm (after a Linear) / LayerNorm / ReLU /
        Dropout / Identity (``NotImplementedError`` on anything else). The caller's ``src``
        is never written; with ``dst`` the result lands there."""
        from mtl_bt.models.numpy_forward import _layers

        return self._leaves(_layers(module), src, dst, owned=False)

    def parallel(self, modules: Sequence[nn.Module], src: Slot) -> list[Slot]:
        """Several ``nn.Sequential`` reading ``src`` (per-task towers, columns): their first
        Linears (+ BatchNorm) as one wider op, a ReLU right after each fused into it, the
        rest of each on its own part. Same result as one ``sequential`` each, fewer and
        longer loops."""
        from mtl_bt.models.numpy_forward import _layers

        seqs = [_layers(m) for m in modules]
        if len(seqs) < 2 or not all(seq and isinstance(seq[0], nn.Linear) for seq in seqs):
            return [self.sequential(m, src) for m in modules]
        firsts, rests = [], []
        for seq in seqs:
            bn = seq[1] if len(seq) > 1 and isinstance(seq[1], nn.BatchNorm1d) else None
            firsts.append(linear_params(seq[0], bn))
            rests.append(seq[2 if bn is not None else 1 :])
        relu = all(rest and isinstance(rest[0], nn.ReLU) for rest in rests)
        if relu:
            rests = [rest[1:] for rest in rests]
        w = np.concatenate([f[0] for f in firsts], axis=1)
        out = self.affine(
            src, w, np.concatenate([f[1] for f in firsts]), act="relu" if relu else "none"
        )
        parts = self.split(out, [f[0].shape[1] for f in firsts])
        return [
            self._leaves(rest, part, None, owned=True)
            for rest, part in zip(rests, parts, strict=True)
        ]

    def _leaves(self, mods: Sequence[nn.Module], src: Slot, dst: Slot | None, owned: bool) -> Slot:
        """``sequential`` over leaf modules; ``owned``: ``src`` may be written in place."""
        linear_at = [i for i, m in enumerate(mods) if isinstance(m, nn.Linear)]
        last_linear = linear_at[-1] if linear_at else -1
        cur, i = src, 0
        while i < len(mods):
            m = mods[i]
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            if isinstance(m, nn.Linear):
                bn = nxt if isinstance(nxt, nn.BatchNorm1d) else None
                cur = self.linear(m, cur, bn, dst=dst if i == last_linear else None)
                owned = True
                i += 2 if bn is not None else 1
                continue
            if not isinstance(m, nn.ReLU | nn.LayerNorm):
                raise NotImplementedError(f"no kernel version of {type(m).__name__}")
            if not owned:  # never write the caller's slot
                cur = self.copy(cur, dst if i > last_linear else None)
                owned = True
            if isinstance(m, nn.ReLU):
                self.relu(cur)
            else:
                self.layer_norm(cur, m)
            i += 1
        if dst is not None and cur != dst:
            cur = self.copy(cur, dst)
        return cur

    def experts(self, modules: Sequence[nn.Module], src: Slot, dst: Slot | None = None) -> Slot:
        """``layers.Experts`` modules all reading ``src`` (``n`` expert MLPs each, ReLU after
        every layer); every expert's output back to back, module after module. One-layer
        experts are one op for all of them (their weights packed side by side)."""
        stacks = [[(_np(m.weight), _np(m.bias)) for m in module.layers] for module in modules]
        if not stacks or not all(stacks):
            raise NotImplementedError("Experts without layers")
        width = sum(s[-1][0].shape[0] * s[-1][0].shape[2] for s in stacks)
        dst = dst or self.slot(width)
        self._check(dst, width)
        if all(len(s) == 1 for s in stacks):
            packed = [w.transpose(1, 0, 2).reshape(w.shape[1], -1) for ((w, _),) in stacks]
            bias = [b.reshape(-1) for ((_, b),) in stacks]
            return self.affine(
                src, np.concatenate(packed, axis=1), np.concatenate(bias), dst, "relu"
            )
        at = 0
        for stack in stacks:
            cur = src
            for i, (w, b) in enumerate(stack):  # (n, in, out), (n, out)
                n, n_in, n_out = w.shape
                out = dst.sub(at, n * n_out) if i == len(stack) - 1 else self.slot(n * n_out)
                if i == 0:
                    packed = w.transpose(1, 0, 2).reshape(n_in, n * n_out)
                    self.affine(cur, packed, b.reshape(-1), out, "relu")
                else:
                    for e in range(n):
                        part = out.sub(e * n_out, n_out)
                        self.affine(cur.sub(e * n_in, n_in), w[e], b[e], part, "relu")
                cur = out
            at += cur.width
        return dst

    def split(self, slot: Slot, widths: Sequence[int]) -> list[Slot]:
        """``slot`` cut into consecutive sub-slots of ``widths``."""
        if sum(widths) != slot.width:
            raise ValueError(f"widths {list(widths)} do not add up to {slot.width}")
        out, at = [], 0
        for w in widths:
            out.append(slot.sub(at, w))
            at += w
        return out

    def output(self, name: str, slot: Slot) -> None:
        """``slot`` is task ``name``'s raw output."""
        self._op(OUTPUT, slot.offset, slot.width, self._cols)
        self.outputs.append((name, self._cols, slot.width))
        self._cols += slot.width

    def transform(self, name: str, steps: Sequence[Sequence[Any]]) -> None:
        """Task ``name``'s output transform as elementwise steps on its output columns
        (after every op, so an output another op reads stays raw): ``("scale", c)`` x * c,
        ``("sigmoid",)``, ``("clamp", lo, hi)``, ``("exp",)``, in order, in float32."""
        hit = [(c, w) for n, c, w in self.outputs if n == name]
        if not hit:
            raise ValueError(f"no output {name!r} to transform")
        col, width = hit[0]
        for step in steps:
            kind, n_const = STEPS.get(str(step[0]), (None, 0))
            if kind is None or len(step) != 1 + n_const:
                raise ValueError(f"unknown transform step {tuple(step)!r}; use {sorted(STEPS)}")
            consts = np.asarray([float(c) for c in step[1:]] or [0.0], np.float64)
            self._transforms.append([TRANSFORM, col, width, kind, self._w(consts)])

    # -- checks -------------------------------------------------------------
    @staticmethod
    def _check(slot: Slot, width: int) -> None:
        if slot.width != width:
            raise ValueError(f"slot of width {slot.width} where {width} values go")

    @staticmethod
    def _distinct(a: Slot, b: Slot) -> None:
        if a.offset < b.offset + b.width and b.offset < a.offset + a.width:
            raise ValueError("an op's input and output slots overlap")

    # -- the result ---------------------------------------------------------
    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ops (n_ops, WIDTH) int64, weights float32)``."""
        rows = self._ops + self._transforms
        ops = np.zeros((len(rows), WIDTH), np.int64)
        for i, row in enumerate(rows):
            ops[i, : len(row)] = row
        ops[0, 1], ops[0, 2] = max(self._size, 1), self._cols
        weights = (
            np.concatenate(self._weights).astype(np.float32)
            if self._weights
            else np.zeros(1, np.float32)
        )
        return ops, weights

    def compile(self) -> Kernel | None:
        """The runnable program, or None without a working numba (or with
        ``MTL_BT_NO_KERNEL=1``): the caller falls back to another path."""
        run = runner()
        if run is None:
            return None
        ops, weights = self.tables()
        return Kernel(run, ops, weights, self.outputs, self.n_inputs, self.n_assets)


def _np(t: Any) -> np.ndarray:
    return t.detach().double().cpu().numpy()


class Kernel:
    """A compiled program: ``kernel(x, ids) -> {task: raw float32 output}``.

    ``x``: raw features ``(n, ...)`` (float32, any trailing shape of ``n_inputs``
    values); ``ids``: asset ids ``(n,)`` when the program has an embedding.
    """

    def __init__(
        self,
        run: Callable[..., int],
        ops: np.ndarray,
        weights: np.ndarray,
        outputs: Sequence[tuple[str, int, int]],
        n_inputs: int,
        n_assets: int,
    ) -> None:
        self.run, self.ops, self.weights = run, ops, weights
        self.outputs = list(outputs)
        self.n_cols = int(ops[0, 2])
        self.n_inputs = n_inputs
        self.n_assets = n_assets

    def raw(self, x: np.ndarray, ids: np.ndarray | None) -> np.ndarray:
        """Every output column, ``(n_cols, n)`` float32; ``x`` as in the class docstring."""
        n = x.shape[0]
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.size != n * self.n_inputs:
            raise ValueError(f"rows of {x.shape[1:]} values; the program reads {self.n_inputs}")
        x2 = x.reshape(n, self.n_inputs)
        ids = self.ids(ids, n)
        out = np.empty((self.n_cols, n), np.float32)
        status = self.run(self.ops, self.weights, x2, ids, out)
        if status:
            raise bad_ids(ids, self.n_assets)
        return out

    def ids(self, ids: np.ndarray | None, n: int) -> np.ndarray:
        """``ids`` as the int64 vector ``run`` reads (checked for its length)."""
        if not self.n_assets:
            return _NO_IDS
        if ids is None:
            raise ValueError(
                "this model has an asset embedding: pass asset ids (batch,) as `asset`"
            )
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if ids.shape[0] != n:
            raise ValueError(f"got {ids.shape[0]} asset ids for a batch of {n} rows")
        return ids

    def multiply_adds(self) -> int:
        """Multiply-adds one row costs (matrix products, mixes, gates, GRU and conv steps):
        the arithmetic no implementation can skip, so batch time >= rows x this / peak."""
        ops, total, pc = self.ops, 0, 1
        while pc < ops.shape[0]:
            p = [int(v) for v in ops[pc]]
            if p[0] == AFFINE:
                total += p[3] * p[4]
            elif p[0] == MIX:
                total += p[3] * p[4] * p[5]
            elif p[0] == GATE:
                total += (p[4] + p[6]) * p[7]
            elif p[0] == GRU:  # per step: input and hidden products into 3 gates
                total += p[3] * (p[4] + p[5]) * 3 * p[5]
            elif p[0] == CONV:  # taps inside the sequence x in x out, at each step computed
                c_in, c_out, dil, n_t, k = p[3], p[4], p[6], p[7], p[8]
                n_data = (n_t + WIDTH - 2) // (WIDTH - 1)  # the DATA rows listing its steps
                steps = ops[pc + 1 : pc + 1 + n_data, 1:].reshape(-1)[:n_t]
                for t in steps.tolist():
                    total += sum(t - j * dil >= 0 for j in range(k)) * c_in * c_out
                pc += n_data
            pc += 1
        return total

    def __call__(self, x: np.ndarray, ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        out = self.raw(x, ids)
        return {
            name: out[c] if w == 1 else np.ascontiguousarray(out[c : c + w].T)
            for name, c, w in self.outputs
        }


_NO_IDS = np.zeros(0, np.int64)


def bad_ids(ids: np.ndarray, n_assets: int) -> ValueError:
    return ValueError(
        f"asset ids must be in 0..{n_assets - 1} (n_assets={n_assets}); "
        f"got {int(ids.min())}..{int(ids.max())}"
    )


def input_stage(
    prog: Program,
    stage: nn.Module,
    scale: tuple[np.ndarray, np.ndarray] | None = None,
    clip: float | None = None,
) -> Slot:
    """``InputStage`` (scaling and clip of the raw features, encoder "none" | "gru" |
    "conv", asset embedding) into ``prog``; returns ``h``, the slot architectures read."""
    from mtl_bt.models.input_stage import CausalConv

    steps = 1 if stage.encoder is None else int(stage.lookback or 0)
    if steps < 1:
        raise NotImplementedError("a sequence encoder without a fixed lookback")
    x = prog.input(stage.in_features, steps, scale, clip)
    emb = 0 if stage.embedding is None else stage.embedding.embedding_dim
    if stage.encoder is None and not emb:
        return x
    h = prog.slot(stage.out_features)
    body = h.sub(0, stage.out_features - emb)
    if stage.encoder is None:
        prog.copy(x, body)
    elif isinstance(stage.encoder, nn.GRU):
        prog.gru(stage.encoder, x, steps, body)
    elif isinstance(stage.encoder, CausalConv):
        prog.causal_conv(stage.encoder, x, steps, body)
    else:
        raise NotImplementedError(f"no kernel version of encoder {type(stage.encoder).__name__}")
    if emb:
        prog.embedding(_np(stage.embedding.weight), h.sub(stage.out_features - emb, emb))
    return h


# -- the interpreter ---------------------------------------------------------
_RUNNER: list[Any] = []


def enabled() -> bool:
    """False with ``MTL_BT_NO_KERNEL`` set (to anything but 0)."""
    return os.environ.get("MTL_BT_NO_KERNEL", "") in ("", "0")


def runner() -> Callable[..., int] | None:
    """``_run`` compiled by numba (once per process, cached on disk by numba), or None
    when disabled or when numba is missing or fails."""
    if not enabled():
        return None
    if not _RUNNER:
        try:
            import numba

            sig = "int64(int64[:, ::1], float32[::1], float32[:, ::1], int64[::1], float32[:, ::1])"
            try:  # cached beside this module, else in numba's user-wide cache directory
                run = numba.njit(sig, cache=True, nogil=True, error_model="numpy")(_run)
            except RuntimeError:  # no writable cache anywhere (read-only install): compile
                run = numba.njit(sig, cache=False, nogil=True, error_model="numpy")(_run)
            # one tiny program end to end: a numba that compiles but miscomputes is refused
            ops = np.zeros((3, WIDTH), np.int64)
            ops[0, :3] = [HEADER, 16, 1]
            ops[1, :7] = [INPUT, 0, 1, 1, 0, -1, 1]
            ops[2, :4] = [OUTPUT, 0, 1, 0]
            out = np.zeros((1, 2), np.float32)
            run(ops, np.float32([2.0, 1.0]), np.float32([[1.0], [3.0]]), _NO_IDS, out)
            _RUNNER.append(run if out.tolist() == [[3.0, 7.0]] else None)
        except Exception:  # noqa: BLE001 - no numba, or it cannot compile here: fall back
            _RUNNER.append(None)
    return _RUNNER[0]


def _run(ops, weights, x, ids, out):  # type: ignore[no-untyped-def]  # numba types it
    """Run the op table on every row of ``x``; 0, or ``1 + row`` of an asset id outside
    the embedding table (the rest of ``out`` is then undefined).

    Inner loops run over views (``s[a:b]``) indexed from 0: an index known to be
    non-negative needs no wraparound check, so LLVM vectorises the loop.
    """
    n_ops = ops.shape[0]
    s = np.zeros(ops[0, 1], np.float32)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for r in range(x.shape[0]):
        xr = x[r]
        pc = 1
        while pc < n_ops:
            p = ops[pc]
            op = p[0]
            if op == AFFINE:
                n_in, n_out, w, act = p[3], p[4], p[5], p[6]
                o = s[p[1] : p[1] + n_out]
                h = s[p[2] : p[2] + n_in]
                o[:] = weights[w + n_in * n_out : w + n_in * n_out + n_out]
                i = 0
                while i + 4 <= n_in:  # four inputs a pass: a quarter of the loads and stores of o
                    h0, h1, h2, h3 = h[i], h[i + 1], h[i + 2], h[i + 3]
                    q = w + i * n_out
                    w0 = weights[q : q + n_out]
                    w1 = weights[q + n_out : q + 2 * n_out]
                    w2 = weights[q + 2 * n_out : q + 3 * n_out]
                    w3 = weights[q + 3 * n_out : q + 4 * n_out]
                    for j in range(n_out):
                        o[j] += (h0 * w0[j] + h1 * w1[j]) + (h2 * w2[j] + h3 * w3[j])
                    i += 4
                while i < n_in:
                    h0 = h[i]
                    w0 = weights[w + i * n_out : w + (i + 1) * n_out]
                    for j in range(n_out):
                        o[j] += h0 * w0[j]
                    i += 1
                if act == RELU:  # a select, not a branch: vectorised; NaN stays NaN as in torch
                    for j in range(n_out):
                        o[j] = zero if o[j] < zero else o[j]
                elif act == SIGMOID:
                    for j in range(n_out):
                        o[j] = one / (one + np.exp(-o[j]))
                elif act == TANH:
                    for j in range(n_out):
                        o[j] = np.tanh(o[j])
            elif op == ACT:
                o = s[p[1] : p[1] + p[2]]
                act = p[3]
                for j in range(o.shape[0]):
                    if act == RELU:
                        if o[j] < zero:
                            o[j] = zero
                    elif act == SIGMOID:
                        o[j] = one / (one + np.exp(-o[j]))
                    elif act == TANH:
                        o[j] = np.tanh(o[j])
            elif op == LAYER_NORM:
                n, w, act = p[2], p[3], p[4]
                o = s[p[1] : p[1] + n]
                gamma, beta = weights[w : w + n], weights[w + n : w + 2 * n]
                mean = 0.0
                for j in range(n):
                    mean += o[j]
                mean /= n
                var = 0.0
                for j in range(n):
                    dv = o[j] - mean
                    var += dv * dv
                inv = 1.0 / np.sqrt(var / n + weights[w + 2 * n])
                for j in range(n):
                    v = np.float32((o[j] - mean) * inv) * gamma[j] + beta[j]
                    if act == RELU and v < zero:
                        v = zero
                    o[j] = v
            elif op == COPY:
                s[p[1] : p[1] + p[3]] = s[p[2] : p[2] + p[3]]
            elif op == MIX:
                k_out, k_in, d, w = p[3], p[4], p[5], p[6]
                for i in range(k_out):
                    o = s[p[1] + i * d : p[1] + (i + 1) * d]
                    o[:] = zero
                    for j in range(k_in):
                        a = weights[w + i * k_in + j]
                        h = s[p[2] + j * d : p[2] + (j + 1) * d]
                        for t in range(d):
                            o[t] += a * h[t]
            elif op == GATE or op == SOFTMAX:
                if op == GATE:
                    g = s[p[2] : p[2] + p[4] + p[6]]
                else:
                    g = s[p[1] : p[1] + p[2]]
                m = g[0]
                for j in range(1, g.shape[0]):
                    if g[j] > m:
                        m = g[j]
                total = zero
                for j in range(g.shape[0]):
                    e = np.exp(g[j] - m)
                    g[j] = e
                    total += e
                for j in range(g.shape[0]):
                    g[j] /= total
                if op == GATE:
                    na, d = p[4], p[7]
                    o = s[p[1] : p[1] + d]
                    o[:] = zero
                    for j in range(g.shape[0]):
                        q = p[3] + j * d if j < na else p[5] + (j - na) * d
                        h = s[q : q + d]
                        a = g[j]
                        for t in range(d):
                            o[t] += a * h[t]
            elif op == INPUT:
                n, f, w, c, scaled = p[2], p[3], p[4], p[5], p[6]
                o = s[p[1] : p[1] + n]
                a_, b_ = weights[w : w + f], weights[w + f : w + 2 * f]
                for t in range(n // f):
                    ot = o[t * f : (t + 1) * f]
                    xt = xr[t * f : (t + 1) * f]
                    if scaled:
                        for j in range(f):
                            ot[j] = xt[j] * a_[j] + b_[j]
                    else:
                        ot[:] = xt
                if c >= 0:
                    lim = weights[c]
                    for j in range(n):
                        if o[j] < -lim:
                            o[j] = -lim
                        if o[j] > lim:
                            o[j] = lim
            elif op == EMBED:
                dim, n_assets, w = p[2], p[3], p[4]
                aid = ids[r]
                if aid < 0 or aid >= n_assets:
                    return r + 1
                s[p[1] : p[1] + dim] = weights[w + aid * dim : w + (aid + 1) * dim]
            elif op == GRU:
                steps, f, hidden, w = p[3], p[4], p[5], p[6]
                g3 = 3 * hidden
                h = s[p[1] : p[1] + hidden]
                gi = s[p[7] : p[7] + g3]
                gh = s[p[7] + g3 : p[7] + 2 * g3]
                b_ih = weights[w + f * g3 : w + f * g3 + g3]
                w_hh = w + f * g3 + g3
                b_hh = weights[w_hh + hidden * g3 : w_hh + hidden * g3 + g3]
                h[:] = zero
                for t in range(steps):
                    gi[:] = b_ih
                    gh[:] = b_hh
                    xt = s[p[2] + t * f : p[2] + (t + 1) * f]
                    i = 0
                    while i + 4 <= f:  # four inputs a pass: a quarter of the loads and stores of gi
                        h0, h1, h2, h3 = xt[i], xt[i + 1], xt[i + 2], xt[i + 3]
                        q = w + i * g3
                        w0 = weights[q : q + g3]
                        w1 = weights[q + g3 : q + 2 * g3]
                        w2 = weights[q + 2 * g3 : q + 3 * g3]
                        w3 = weights[q + 3 * g3 : q + 4 * g3]
                        for j in range(g3):
                            gi[j] += (h0 * w0[j] + h1 * w1[j]) + (h2 * w2[j] + h3 * w3[j])
                        i += 4
                    while i < f:
                        h0 = xt[i]
                        w0 = weights[w + i * g3 : w + (i + 1) * g3]
                        for j in range(g3):
                            gi[j] += h0 * w0[j]
                        i += 1
                    i = 0
                    while (
                        i + 4 <= hidden
                    ):  # four inputs a pass: a quarter of the loads and stores of gh
                        h0, h1, h2, h3 = h[i], h[i + 1], h[i + 2], h[i + 3]
                        q = w_hh + i * g3
                        w0 = weights[q : q + g3]
                        w1 = weights[q + g3 : q + 2 * g3]
                        w2 = weights[q + 2 * g3 : q + 3 * g3]
                        w3 = weights[q + 3 * g3 : q + 4 * g3]
                        for j in range(g3):
                            gh[j] += (h0 * w0[j] + h1 * w1[j]) + (h2 * w2[j] + h3 * w3[j])
                        i += 4
                    while i < hidden:
                        h0 = h[i]
                        w0 = weights[w_hh + i * g3 : w_hh + (i + 1) * g3]
                        for j in range(g3):
                            gh[j] += h0 * w0[j]
                        i += 1
                    for j in range(hidden):
                        rg = one / (one + np.exp(-(gi[j] + gh[j])))
                        zg = one / (one + np.exp(-(gi[hidden + j] + gh[hidden + j])))
                        ng = np.tanh(gi[2 * hidden + j] + rg * gh[2 * hidden + j])
                        h[j] = (one - zg) * ng + zg * h[j]
            elif op == CONV:
                c_in, c_out, w, dil, n_t, k = p[3], p[4], p[5], p[6], p[7], p[8]
                b = weights[w + k * c_in * c_out : w + k * c_in * c_out + c_out]
                for q in range(n_t):
                    t = ops[pc + 1 + q // (WIDTH - 1), 1 + q % (WIDTH - 1)]
                    o = s[p[1] + t * c_out : p[1] + (t + 1) * c_out]
                    o[:] = b
                    for tap in range(k):
                        tt = t - (k - 1 - tap) * dil
                        if tt < 0:  # left padding: zeros
                            continue
                        h = s[p[2] + tt * c_in : p[2] + (tt + 1) * c_in]
                        wt = w + tap * c_in * c_out
                        i = 0
                        while (
                            i + 4 <= c_in
                        ):  # four inputs a pass: a quarter of the loads and stores of o
                            h0, h1, h2, h3 = h[i], h[i + 1], h[i + 2], h[i + 3]
                            q = wt + i * c_out
                            w0 = weights[q : q + c_out]
                            w1 = weights[q + c_out : q + 2 * c_out]
                            w2 = weights[q + 2 * c_out : q + 3 * c_out]
                            w3 = weights[q + 3 * c_out : q + 4 * c_out]
                            for j in range(c_out):
                                o[j] += (h0 * w0[j] + h1 * w1[j]) + (h2 * w2[j] + h3 * w3[j])
                            i += 4
                        while i < c_in:
                            h0 = h[i]
                            w0 = weights[wt + i * c_out : wt + (i + 1) * c_out]
                            for j in range(c_out):
                                o[j] += h0 * w0[j]
                            i += 1
                    for j in range(c_out):
                        o[j] = zero if o[j] < zero else o[j]
                pc += (n_t + WIDTH - 2) // (WIDTH - 1)
            elif op == OUTPUT:
                h = s[p[1] : p[1] + p[2]]
                for j in range(p[2]):
                    out[p[3] + j, r] = h[j]
            elif op == TRANSFORM:  # on the output columns, after every other op
                kind, c = p[3], p[4]
                for j in range(p[1], p[1] + p[2]):
                    v = out[j, r]
                    if kind == T_SCALE:
                        v = v * weights[c]
                    elif kind == T_SIGMOID:
                        v = one / (one + np.exp(-v))
                    elif kind == T_CLAMP:  # NaN stays NaN, as np.maximum/np.minimum
                        if v < weights[c]:
                            v = weights[c]
                        if v > weights[c + 1]:
                            v = weights[c + 1]
                    elif kind == T_EXP:
                        v = np.exp(v)
                    out[j, r] = v
            pc += 1
    return 0
