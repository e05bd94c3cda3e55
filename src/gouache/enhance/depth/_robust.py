"""Robust line fits ``y ~ a * x + b`` (high-breakdown start, then IRLS) and robust loss weights."""

from __future__ import annotations

import numpy as np

MIN_POINTS = 16
LOSSES = ("tukey", "huber")
TUKEY_C = 4.685
HUBER_C = 1.345
_LQS_QUANTILE = 0.3
_LQS_GAUSS = 0.385  # the 0.65 quantile of a standard normal: |r| quantile 0.3 -> sigma


def loss_weights(t: np.ndarray, loss: str) -> np.ndarray:
    """IRLS weights of standardized residuals ``t`` for Tukey's biweight or Huber's loss."""
    if loss == "huber":
        at = np.abs(t)
        return np.where(at <= HUBER_C, 1.0, HUBER_C / np.maximum(at, 1e-300))
    return np.where(np.abs(t) < TUKEY_C, np.square(1.0 - np.square(t / TUKEY_C)), 0.0)


def loss_value(t: np.ndarray, loss: str) -> np.ndarray:
    """The robust loss ``rho(t)`` whose IRLS weights :func:`loss_weights` gives."""
    at = np.abs(t)
    if loss == "huber":
        return np.where(at <= HUBER_C, 0.5 * t * t, HUBER_C * (at - 0.5 * HUBER_C))
    x = np.minimum(at / TUKEY_C, 1.0)
    return TUKEY_C**2 / 6.0 * (1.0 - (1.0 - x * x) ** 3)


def robust_line(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, loss: str = "tukey", steps: int = 50
) -> tuple[float, float] | None:
    """Robust fit of ``y ~ a * x + b`` (``None`` when there are too few points).

    Start: the candidate line (from random point pairs, plus least squares) with the least
    30 % quantile of absolute residuals (high breakdown: occluded correspondences can be
    a majority).  Then IRLS with Tukey or Huber weights, the residual scale taken from the
    same quantile (``Q30(|r|) / 0.385``, consistent for Gaussian noise).
    """
    keep = np.isfinite(x) & np.isfinite(y) & (w > 0)
    x, y, w = x[keep], y[keep], w[keep]
    if x.size < MIN_POINTS:
        return None
    a, b = _lqs_start(x, y, w)
    floor = 1e-9 * max(float(np.ptp(y)), 1e-12)
    for _ in range(steps):
        r = y - (a * x + b)
        sigma = max(_quantile_abs(r) / _LQS_GAUSS, floor)
        fit = _weighted_line(x, y, w * loss_weights(r / sigma, loss))
        if fit is None:
            break
        done = abs(fit[0] - a) <= 1e-10 * (abs(a) + 1e-12) and abs(fit[1] - b) <= 1e-10 * (abs(b) + abs(a) + 1e-12)
        a, b = fit
        if done:
            break
    return (float(a), float(b))


def _quantile_abs(r: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """The ``_LQS_QUANTILE`` quantile of ``|r|`` (along ``axis``)."""
    a = np.abs(r)
    n = a.shape[-1] if axis is not None else a.size
    k = min(n - 1, int(_LQS_QUANTILE * n))
    if axis is None:
        return float(np.partition(a.ravel(), k)[k])
    return np.partition(a, k, axis=axis)[..., k]


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float] | None:
    sw = w.sum()
    if not sw > 0:
        return None
    mx, my = (w * x).sum() / sw, (w * y).sum() / sw
    sxx = (w * np.square(x - mx)).sum()
    if not sxx > 1e-24 * sw * max(mx * mx, 1.0):
        return (1.0, float(my - mx))  # x constant: only a shift is defined
    a = (w * (x - mx) * (y - my)).sum() / sxx
    return (float(a), float(my - a * mx))


def _lqs_start(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, trials: int = 300, sample: int = 2000
) -> tuple[float, float]:
    """Least-quantile-of-squares line from random point pairs (deterministic), plus the LS line."""
    rng = np.random.default_rng(0)
    strong = np.flatnonzero(w >= 0.5)
    pool = strong if strong.size >= MIN_POINTS else np.arange(x.size)
    if pool.size > sample:
        pool = rng.choice(pool, sample, replace=False)
    xs, ys = x[pool], y[pool]
    i, j = rng.integers(0, xs.size, (2, trials))
    dx = xs[i] - xs[j]
    good = np.abs(dx) > 1e-12 * max(float(np.ptp(xs)), 1e-300)
    a = (ys[i] - ys[j])[good] / dx[good]
    b = ys[i][good] - a * xs[i][good]
    ls = _weighted_line(xs, ys, np.ones_like(xs))
    if ls is not None:
        a, b = np.append(a, ls[0]), np.append(b, ls[1])
    if a.size == 0:
        return (1.0, float(np.median(ys - xs)))
    score = _quantile_abs(ys[None, :] - (a[:, None] * xs[None, :] + b[:, None]), axis=1)
    best = int(np.argmin(score))
    return (float(a[best]), float(b[best]))
