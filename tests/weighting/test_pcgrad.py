"""PCGrad (Yu et al. 2020) laws and an independent vector-level reference."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt.plugins.weightings.pcgrad import PCGrad, pcgrad_matrix


def _projected(grads: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g64 = grads.double()
    c = pcgrad_matrix(g64 @ g64.T, torch.Generator().manual_seed(seed))
    return c @ g64


def _aggregate(grads: torch.Tensor, seed: int = 0) -> torch.Tensor:
    w = PCGrad([f"t{i}@1" for i in range(grads.shape[0])], seed=seed)
    return w.aggregate(grads.double(), [torch.tensor(1.0)] * grads.shape[0])


def test_orthogonal_gradients_unchanged():
    g = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    torch.testing.assert_close(_projected(g), g.double())
    torch.testing.assert_close(_aggregate(g), g.double().sum(0))


def test_conflicting_pair_projected_orthogonal_to_other_original():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    p = _projected(g)
    assert abs(float(p[0] @ g[1].double())) < 1e-12
    assert abs(float(p[1] @ g[0].double())) < 1e-12
    # golden values: g1' = g1 - (g1.g2/|g2|^2) g2 = [0.5, 0.5]; g2' = [0, 1]
    torch.testing.assert_close(p, torch.tensor([[0.5, 0.5], [0.0, 1.0]], dtype=torch.float64))
    w = PCGrad(["a@1", "b@1"])
    update = w.aggregate(g.double(), [torch.tensor(1.0)] * 2)
    torch.testing.assert_close(update, torch.tensor([0.5, 1.5], dtype=torch.float64))
    # g1' = g1 + 0.5 g2 and g2' = g1 + g2: effective coefficients 2 and 1.5
    assert w.weights() == {"a@1": 2.0, "b@1": 1.5}


@given(st.integers(2, 5), st.integers(2, 6), st.integers(0, 10_000))
def test_no_conflict_no_change(k, p, seed):
    g = torch.rand(k, p, generator=torch.Generator().manual_seed(seed)) + 0.01  # all dots > 0
    torch.testing.assert_close(_projected(g, seed), g.double())
    torch.testing.assert_close(_aggregate(g, seed), g.double().sum(0))


def _reference(grads: torch.Tensor, seed: int) -> torch.Tensor:
    """The paper's algorithm on vectors, same random order source."""
    gen = torch.Generator().manual_seed(seed)
    grads = grads.double()
    out = []
    for i in range(grads.shape[0]):
        gi = grads[i].clone()
        for j in torch.randperm(grads.shape[0], generator=gen).tolist():
            if j == i:
                continue
            dot = gi @ grads[j]
            if dot < 0 and grads[j] @ grads[j] > 0:
                gi = gi - dot / (grads[j] @ grads[j]) * grads[j]
        out.append(gi)
    return torch.stack(out)


@given(st.integers(2, 5), st.integers(2, 8), st.integers(0, 10_000))
def test_matches_vector_reference(k, p, seed):
    g = torch.randn(k, p, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(_projected(g, seed), _reference(g, seed))
    torch.testing.assert_close(_aggregate(g, seed), _reference(g, seed).sum(0))


def test_random_order_matters_and_is_seeded():
    # three mutually conflicting gradients: the result depends on the order
    g = torch.tensor([[1.0, 0.0], [-0.8, 0.6], [-0.6, -0.8]])
    results = {tuple(_aggregate(g, s).round(decimals=9).tolist()) for s in range(20)}
    assert len(results) > 1
    torch.testing.assert_close(_aggregate(g, 3), _aggregate(g, 3))
