"""Statistics for honest strategy comparison.

- :func:`paired_bootstrap_sharpe_diff`: confidence interval of Sharpe(a) - Sharpe(b) when both
  strategies traded the *same* bars, resampling bar indices jointly (circular block bootstrap,
  so autocorrelation and the cross-correlation of the two series are kept).
- :func:`holm`: Holm-Bonferroni adjusted p-values for a family of tests (every table of
  tests shows them beside the raw ones).
- :func:`probabilistic_sharpe_ratio` (PSR) and :func:`deflated_sharpe_ratio` (DSR), after
  Bailey & Lopez de Prado, "The Deflated Sharpe Ratio: Correcting for Selection Bias,
  Backtest Overfitting and Non-Normality" (J. Portfolio Management, 2014). DSR is the PSR
  against the Sharpe ratio one would expect from the best of N unskilled trials.

Sharpe ratios here are *per period* (mean / sample std of the bar returns) unless a function
says otherwise; PSR/DSR are defined on per-period values. Annualise by sqrt(periods per year).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

_NORMAL = NormalDist()

#: Euler-Mascheroni constant, used by the expected maximum of N Gaussian Sharpe ratios.
EULER_GAMMA = 0.5772156649015329


def _clean(returns: np.ndarray | list[float], name: str = "returns") -> np.ndarray:
    arr = np.asarray(returns, dtype=float).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; drop or fill them before testing")
    return arr


def sharpe(returns: np.ndarray | list[float], risk_free: float = 0.0) -> float:
    """Per-period Sharpe ratio ``mean(r - rf) / std(r, ddof=1)``; NaN if undefined (flat series)."""
    arr = _clean(returns) - risk_free
    if arr.size < 2:
        return float("nan")
    sd = arr.std(ddof=1)
    if not sd > 1e-15:
        return float("nan")
    return float(arr.mean() / sd)


def probabilistic_sharpe_ratio_from_stats(
    sr: float, n: int, skew: float = 0.0, kurtosis: float = 3.0, sr_benchmark: float = 0.0
) -> float:
    """PSR = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - skew SR + (kurtosis - 1)/4 SR^2)).

    ``sr`` and ``sr_benchmark`` are per-period; ``kurtosis`` is the plain (not excess) kurtosis,
    3 for a normal distribution. The denominator is the standard error of the Sharpe estimator
    under non-normal returns (Mertens 2002), which is why skewed, fat-tailed strategies need a
    longer track record for the same confidence.
    """
    if n < 2 or not math.isfinite(sr):
        return float("nan")
    var = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr**2
    if var <= 0:
        return float("nan")
    z = (sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(var)
    return float(_NORMAL.cdf(z))


def _moments(arr: np.ndarray) -> tuple[float, float]:
    """Sample skewness and plain kurtosis (population moments, as in the PSR formula)."""
    dev = arr - arr.mean()
    m2 = float(np.mean(dev**2))
    if m2 <= 0:
        return 0.0, 3.0
    return float(np.mean(dev**3)) / m2**1.5, float(np.mean(dev**4)) / m2**2


def probabilistic_sharpe_ratio(
    returns: np.ndarray | list[float], sr_benchmark: float = 0.0
) -> float:
    """Probability that the true per-period Sharpe exceeds ``sr_benchmark``, given the sample."""
    arr = _clean(returns)
    sr = sharpe(arr)
    if not math.isfinite(sr):
        return float("nan")
    skew, kurt = _moments(arr)
    return probabilistic_sharpe_ratio_from_stats(sr, arr.size, skew, kurt, sr_benchmark)


def expected_max_sharpe(n_trials: int, sr_variance: float, sr_mean: float = 0.0) -> float:
    """E[max SR] over ``n_trials`` independent unskilled trials (Bailey & Lopez de Prado 2014).

    SR0 = mean + sqrt(V) ((1 - g) Z^-1(1 - 1/N) + g Z^-1(1 - 1/(N e))), g = Euler-Mascheroni.
    With a single trial there is no selection, so SR0 = ``sr_mean``.
    """
    if n_trials < 1:
        raise ValueError("n_trials must be >= 1")
    if sr_variance < 0:
        raise ValueError("sr_variance must be >= 0")
    if n_trials == 1:
        return float(sr_mean)
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return float(sr_mean + math.sqrt(sr_variance) * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def deflated_sharpe_ratio(
    returns: np.ndarray | list[float],
    *,
    n_trials: int,
    sr_variance: float,
) -> float:
    """DSR: PSR of ``returns`` against the expected best Sharpe of ``n_trials`` unskilled trials.

    ``sr_variance`` is the variance of the per-period Sharpe ratios across the trials that were
    tried (the paper's V[{SR_n}]). DSR near 1: the Sharpe is unlikely to be a selection artefact.
    """
    arr = _clean(returns)
    sr = sharpe(arr)
    if not math.isfinite(sr):
        return float("nan")
    skew, kurt = _moments(arr)
    sr0 = expected_max_sharpe(n_trials, sr_variance)
    return probabilistic_sharpe_ratio_from_stats(sr, arr.size, skew, kurt, sr0)


@dataclass(frozen=True)
class BootstrapResult:
    """Sharpe difference (a - b) with its bootstrap CI; annualised when periods_per_year > 1."""

    diff: float
    low: float
    high: float
    p_value: float
    n: int
    n_boot: int
    block: int
    level: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _block_indices(n: int, block: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Circular block bootstrap: ceil(n / block) random starts, each followed by block - 1 bars."""
    n_blocks = -(-n // block)
    starts = rng.integers(0, n, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]) % n
    return idx.reshape(n_boot, n_blocks * block)[:, :n]


def _sharpe_rows(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = x.mean(axis=1) / sd
    out[~(sd > 1e-15)] = np.nan
    return out


def paired_bootstrap_sharpe_diff(
    a: np.ndarray | list[float],
    b: np.ndarray | list[float],
    *,
    n_boot: int = 2000,
    block: int | None = None,
    level: float = 0.95,
    seed: int = 0,
    periods_per_year: float = 1.0,
) -> BootstrapResult:
    """Percentile CI of Sharpe(a) - Sharpe(b); ``a[i]`` and ``b[i]`` are returns of the same bar.

    Both series are resampled with the *same* indices, which is what makes the test paired:
    market moves common to both strategies cancel instead of widening the interval. ``block``
    defaults to round(n ** (1/3)) (a standard rate for block bootstraps); ``block=1`` is the
    iid bootstrap. ``p_value`` is the two-sided bootstrap p-value of "no difference".
    """
    xa, xb = _clean(a, "a"), _clean(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(f"paired series must have the same length ({xa.size} != {xb.size})")
    n = xa.size
    if n < 3:
        raise ValueError(f"need at least 3 paired returns, got {n}")
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    block = max(1, round(n ** (1 / 3))) if block is None else int(block)
    if not 1 <= block <= n:
        raise ValueError(f"block must be in [1, {n}]")
    scale = math.sqrt(periods_per_year)
    sa, sb = sharpe(xa), sharpe(xb)
    diff = (sa - sb) * scale
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = _block_indices(n, block, m, rng)
        diffs[start : start + m] = (_sharpe_rows(xa[idx]) - _sharpe_rows(xb[idx])) * scale
    return _summarise(diff, diffs, n, n_boot, block, level)


def holm(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (Holm 1979), in the input's order.

    Sorted ascending p_(1) <= ... <= p_(m): adjusted p_(i) = max_{j <= i} min(1, (m - j + 1)
    p_(j)). Rejecting where the adjusted value is <= alpha controls the family-wise error rate
    at alpha for any dependence between the tests. NaN entries (tests not run) are left NaN
    and do not count in m.
    """
    p = np.asarray(p_values, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must be in [0, 1]")
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def seed_time_bootstrap_sharpe_diff(
    a_runs: np.ndarray,
    b_runs: np.ndarray,
    *,
    n_boot: int = 2000,
    block: int | None = None,
    level: float = 0.95,
    seed: int = 0,
    periods_per_year: float = 1.0,
) -> BootstrapResult:
    """CI of Sharpe(mean of a's seeds) - Sharpe(mean of b's seeds) resampling seeds *and* time.

    ``a_runs`` (k_a, n) and ``b_runs`` (k_b, n): per-seed returns of the two variants on the
    same n bars. Each replicate draws k_a seeds of a and k_b seeds of b with replacement
    (the seed ensembles another set of seeds could have given), averages them, then resamples
    the bars with one circular block bootstrap shared by both (paired in time). The interval
    therefore holds both the training-seed variance and the sampling variance over time; with
    one seed per side it is :func:`paired_bootstrap_sharpe_diff`'s interval. The point
    estimate is the difference of the seed ensembles' Sharpe ratios.
    """
    xa = np.atleast_2d(np.asarray(a_runs, dtype=float))
    xb = np.atleast_2d(np.asarray(b_runs, dtype=float))
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(xb))):
        raise ValueError("runs contain NaN or inf; align them on the bars both traded")
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(f"runs must cover the same bars ({xa.shape[1]} != {xb.shape[1]})")
    n = xa.shape[1]
    if n < 3:
        raise ValueError(f"need at least 3 paired returns, got {n}")
    block = max(1, round(n ** (1 / 3))) if block is None else int(block)
    if not 1 <= block <= n:
        raise ValueError(f"block must be in [1, {n}]")
    scale = math.sqrt(periods_per_year)
    diff = (sharpe(xa.mean(axis=0)) - sharpe(xb.mean(axis=0))) * scale
    rng = np.random.default_rng(seed)
    ka, kb = xa.shape[0], xb.shape[0]
    diffs = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(n, 1))  # paired_bootstrap_sharpe_diff's draws first
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = _block_indices(n, block, m, rng)
        pick_a = rng.integers(0, ka, size=(m, ka))
        pick_b = rng.integers(0, kb, size=(m, kb))
        ens_a = xa[pick_a].mean(axis=1)  # (m, n)
        ens_b = xb[pick_b].mean(axis=1)
        rows = np.arange(m)[:, None]
        diffs[start : start + m] = (
            _sharpe_rows(ens_a[rows, idx]) - _sharpe_rows(ens_b[rows, idx])
        ) * scale
    return _summarise(diff, diffs, n, n_boot, block, level)


def _summarise(
    diff: float, diffs: np.ndarray, n: int, n_boot: int, block: int, level: float
) -> BootstrapResult:
    """Percentile interval and two-sided p-value (how often the bootstrap distribution
    crosses zero) of bootstrap Sharpe differences; NaN when too few draws are finite."""
    ok = diffs[np.isfinite(diffs)]
    if ok.size < max(10, n_boot // 2) or not math.isfinite(diff):
        nan = float("nan")
        return BootstrapResult(diff, nan, nan, nan, n, n_boot, block, level)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(ok, [tail, 1.0 - tail])
    p = 2.0 * min((ok <= 0).mean(), (ok >= 0).mean())
    return BootstrapResult(
        diff, float(low), float(high), float(min(1.0, p)), n, n_boot, block, level
    )


def seed_time_bootstrap_mean(
    diffs: np.ndarray,
    *,
    n_boot: int = 2000,
    block: int | None = None,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """CI of the mean of paired per-bar differences, resampling seeds *and* time.

    ``diffs`` (k, m, n): k training seeds, m series (e.g. assets) on one time axis of n bars,
    NaN where a series has no bar. The statistic is the mean over every finite entry. Each
    replicate draws k seeds with replacement and one circular block bootstrap of the n bars,
    shared by every seed and series (series that move together stay together, as in
    :func:`seed_time_bootstrap_sharpe_diff`). ``block`` defaults to round(n ** (1/3)).
    """
    x = np.asarray(diffs, dtype=float)
    if x.ndim != 3:
        raise ValueError(f"diffs must be (seeds, series, bars), got shape {x.shape}")
    k, _, n = x.shape
    finite = np.isfinite(x)
    if not finite.any():
        raise ValueError("diffs has no finite value")
    block = max(1, round(n ** (1 / 3))) if block is None else int(block)
    if not 1 <= block <= n:
        raise ValueError(f"block must be in [1, {n}]")
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    sums = np.where(finite, x, 0.0).sum(axis=1)  # (k, n): per seed and bar
    counts = finite.sum(axis=1).astype(float)
    diff = float(sums.sum() / counts.sum())
    rng = np.random.default_rng(seed)
    diffs_boot = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = _block_indices(n, block, m, rng)
        weights = np.stack([np.bincount(rng.integers(0, k, k), minlength=k) for _ in range(m)])
        s, c = weights @ sums, weights @ counts  # (m, n): the drawn seeds' totals per bar
        rows = np.arange(m)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            diffs_boot[start : start + m] = s[rows, idx].sum(axis=1) / c[rows, idx].sum(axis=1)
    return _summarise(diff, diffs_boot, int(counts.sum()), n_boot, block, level)
