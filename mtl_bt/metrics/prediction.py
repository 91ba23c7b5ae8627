"""Prediction-quality metrics: plain numpy, no fitting, no side effects.

NaN handling (all functions): a pair is used only if both of its values are
finite; the rest are dropped. If too few pairs remain (fewer than 2 for the
correlations, 1 for the others) or the statistic is undefined (a constant
input to a correlation, a single class for AUC), the result is ``nan`` -- never
an exception, so an evaluation table can always be filled in.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "accuracy",
    "auc",
    "base_rate",
    "ic",
    "log_loss",
    "qlike",
    "rank_ic",
    "rankdata",
    "rms_ratio",
    "rmse",
]


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype="float64").ravel()
    b = np.asarray(b, dtype="float64").ravel()
    if a.shape != b.shape:
        raise ValueError(f"length mismatch: {a.shape[0]} predictions vs {b.shape[0]} targets")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    # a constant input has no correlation (checked exactly: its mean may be off by an ulp)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    den = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if den == 0.0 or not math.isfinite(den):
        return math.nan
    return float(np.clip((dx @ dy) / den, -1.0, 1.0))


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy's 'average')."""
    x = np.asarray(x, dtype="float64")
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # start index of each run of equal values
    new = np.concatenate([[True], xs[1:] != xs[:-1]])
    starts = np.flatnonzero(new)
    ends = np.concatenate([starts[1:], [len(xs)]])
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1..ends
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def ic(prediction: np.ndarray, target: np.ndarray) -> float:
    """Information coefficient: Pearson correlation of prediction and target."""
    return _pearson(*_pairs(prediction, target))


def rank_ic(prediction: np.ndarray, target: np.ndarray) -> float:
    """Rank IC: Spearman correlation (Pearson on average ranks, ties handled)."""
    p, t = _pairs(prediction, target)
    if len(p) < 2:
        return math.nan
    return _pearson(rankdata(p), rankdata(t))


def rmse(prediction: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared error."""
    p, t = _pairs(prediction, target)
    if len(p) == 0:
        return math.nan
    return float(np.sqrt(np.mean((p - t) ** 2)))


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney U statistic: P(score_pos > score_neg) + 0.5 P(tie).

    ``label`` is 1 for positives, 0 for negatives (> 0.5 counts as positive).
    """
    s, y = _pairs(score, label)
    pos = y > 0.5
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = rankdata(s)
    u = ranks[pos].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def accuracy(probability: np.ndarray, label: np.ndarray, threshold: float = 0.5) -> float:
    """Share of pairs where (probability > threshold) equals (label > 0.5)."""
    p, y = _pairs(probability, label)
    if len(p) == 0:
        return math.nan
    return float(np.mean((p > threshold) == (y > 0.5)))


def base_rate(label: np.ndarray) -> float:
    """Share of positive labels (the accuracy of always guessing the majority is
    max(base_rate, 1 - base_rate))."""
    y = np.asarray(label, dtype="float64").ravel()
    y = y[np.isfinite(y)]
    return float(np.mean(y > 0.5)) if len(y) else math.nan


def log_loss(probability: np.ndarray, label: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy; probabilities clipped to [eps, 1 - eps]."""
    p, y = _pairs(probability, label)
    if len(p) == 0:
        return math.nan
    p = np.clip(p, eps, 1.0 - eps)
    y = (y > 0.5).astype("float64")
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def qlike(variance_pred: np.ndarray, variance_true: np.ndarray) -> float:
    """QLIKE loss on variances: mean(s/h - log(s/h) - 1), s realised, h forecast.

    0 for a perfect forecast, >= 0 always; robust to noise in the realised
    proxy (Patton 2011). Pairs with s <= 0 or h <= 0 are dropped (log undefined).
    """
    h, s = _pairs(variance_pred, variance_true)
    keep = (h > 0) & (s > 0)
    h, s = h[keep], s[keep]
    if len(h) == 0:
        return math.nan
    ratio = s / h
    return float(np.mean(ratio - np.log(ratio) - 1.0))


def rms_ratio(realised: np.ndarray, predicted: np.ndarray) -> float:
    """Calibration of a volatility level: sqrt(mean(realised^2)) / sqrt(mean(predicted^2)).

    1 is calibrated on average; > 1 means the forecast under-predicts (a position sized by
    target_vol / forecast is too large by that factor). Non-positive pairs are dropped.
    """
    s, h = _pairs(realised, predicted)
    keep = (h > 0) & (s >= 0)
    s, h = s[keep], h[keep]
    if len(h) == 0:
        return math.nan
    return float(math.sqrt(np.mean(s * s) / np.mean(h * h)))
