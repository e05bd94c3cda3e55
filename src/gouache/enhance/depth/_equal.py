"""Alignment at equal pixel coordinates (no poses): each view to an anchor, or all jointly."""

from __future__ import annotations

import numpy as np

from ..._errors import InvalidInputError
from ._robust import MIN_POINTS, loss_weights, robust_line

_MAX_FIT_POINTS = 40000  # an affine fit needs no more; larger maps are sampled on a regular stride


def _sampled(sel: np.ndarray) -> np.ndarray:
    """Flat indices of the selected pixels, thinned to at most ``_MAX_FIT_POINTS``."""
    idx = np.flatnonzero(sel)
    return idx[:: max(1, int(np.ceil(idx.size / _MAX_FIT_POINTS)))]


def fit_to_metric(
    estimate: np.ndarray, valid: np.ndarray, weight: np.ndarray, metric_inv: np.ndarray, loss: str, i: int
) -> tuple[float, float]:
    """``(scale, shift)`` taking a view's estimate to its own metric inverse depth."""
    idx = _sampled(valid & np.isfinite(metric_inv))
    fit = robust_line(estimate.flat[idx], metric_inv.flat[idx], weight.flat[idx], loss)
    if fit is None:
        raise InvalidInputError(f"metric_depth[{i}] shares too few valid pixels with depth_maps[{i}] to fit a scale")
    return fit


def fit_to_anchor(
    anchor_inv: np.ndarray,
    anchor_valid: np.ndarray,
    anchor_weight: np.ndarray,
    estimate: np.ndarray,
    valid: np.ndarray,
    weight: np.ndarray,
    loss: str,
    i: int,
    anchor: int,
) -> tuple[float, float] | None:
    """``(scale, shift)`` taking ``estimate`` to the anchor's inverse depth at the same pixels."""
    if estimate.shape != anchor_inv.shape:
        raise InvalidInputError(
            f"without poses, views are compared at equal pixels, so depth_maps[{i}] {estimate.shape}"
            f" must have the shape of view {anchor} {anchor_inv.shape}; or pass poses and intrinsics"
        )
    idx = _sampled(valid & anchor_valid)
    return robust_line(estimate.flat[idx], anchor_inv.flat[idx], weight.flat[idx] * anchor_weight.flat[idx], loss)


def fit_jointly(
    estimates: list[np.ndarray],
    overlaps: dict[tuple[int, int], np.ndarray],
    weights: list[np.ndarray],
    reference: int,
    loss: str,
    steps: int = 30,
) -> list[tuple[float, float] | None]:
    """Every view's ``(scale, shift)`` at once: robust least squares over all pairs ``(i, j)``
    of ``a_i m_i + b_i - a_j m_j - b_j`` on their ``overlaps`` (pixel masks), with the
    reference view fixed at ``(1, 0)``.  A view in no usable pair gets None."""
    n = len(estimates)
    free = [k for k in range(n) if k != reference]
    col = {k: c for c, k in enumerate(free)}
    blocks = []
    for (i, j), mask in overlaps.items():
        idx = _sampled(mask)
        if idx.size < MIN_POINTS:
            continue
        w = weights[i].flat[idx] * weights[j].flat[idx]
        blocks.append((i, j, estimates[i].flat[idx], estimates[j].flat[idx], w))
    linked = {k for i, j, *_ in blocks for k in (i, j)}
    if not blocks or reference not in linked:
        return [(1.0, 0.0) if k == reference else None for k in range(n)]
    x = _joint_least_squares(blocks, col, reference, n, loss, steps)
    params: list[tuple[float, float] | None] = []
    for k in range(n):
        if k == reference:
            params.append((1.0, 0.0))
        elif k in linked:
            params.append((float(x[2 * col[k]]), float(x[2 * col[k] + 1])))
        else:
            params.append(None)
    return params


def _joint_least_squares(blocks, col, reference, n, loss, steps) -> np.ndarray:
    size = 2 * (n - 1)
    x = np.zeros(size)
    x[0::2] = 1.0
    for step in range(steps):
        A = np.zeros((size, size))
        g = np.zeros(size)
        residuals = []
        rows = []
        for i, j, mi, mj, w in blocks:
            ai, bi = (1.0, 0.0) if i == reference else (x[2 * col[i]], x[2 * col[i] + 1])
            aj, bj = (1.0, 0.0) if j == reference else (x[2 * col[j]], x[2 * col[j] + 1])
            r = ai * mi + bi - aj * mj - bj
            residuals.append(r)
            rows.append((i, j, mi, mj, w, r))
        every = np.concatenate(residuals)
        sigma = max(1.4826 * float(np.median(np.abs(every - np.median(every)))), 1e-12)
        for i, j, mi, mj, w, r in rows:
            ww = w if step == 0 else w * loss_weights(r / sigma, loss)  # plain least squares first
            # d r / d(a_i, b_i, a_j, b_j) = (m_i, 1, -m_j, -1); r is linear in the unknowns
            parts = [(i, mi, 1.0), (j, -mj, -1.0)]
            const = r.copy()
            for k, dm, db in parts:
                if k != reference:
                    const -= dm * x[2 * col[k]] + db * x[2 * col[k] + 1]
            cols, grads = [], []
            for k, dm, db in parts:
                if k != reference:
                    cols += [2 * col[k], 2 * col[k] + 1]
                    grads += [dm, np.full_like(mi, db)]
            for a, ga in zip(cols, grads):
                g[a] += np.sum(ww * ga * const)
                for b, gb in zip(cols, grads):
                    A[a, b] += np.sum(ww * ga * gb)
        new = np.linalg.lstsq(A + 1e-12 * np.trace(A) * np.eye(size), -g, rcond=None)[0]
        done = np.abs(new - x).max() < 1e-10 * (1.0 + np.abs(x).max())
        x = new
        if done:
            break
    return x
