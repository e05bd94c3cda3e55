"""Joint pose-aware alignment: every view's inverse-depth scale and shift at once, from parallax.

Each view ``i`` has a relative inverse-depth estimate ``m_i`` (normalized here to about
``[0, 1]``) and unknowns ``lam_i`` (log scale) and ``u_i`` (shift in units of the map):
its inverse z-depth is ``d_i = exp(lam_i) * (m_i + u_i)``.  For a sample pixel ``p`` of
view ``i`` and a neighbouring view ``j``::

    z     = 1 / d_i(p)                         depth of p along its ray
    Y     = R_j^T (C_i - C_j) + z R_j^T ray_p  the same 3D point in camera j
    q     = project(K_j Y)                     where view j sees it
    r     = log(Y_z) + log(d_j(q))             log z-depth disagreement (0 when consistent)

``r`` is minimized over all samples and neighbours by robust Levenberg-Marquardt
(analytic Jacobian, including the motion of ``q`` through the bilinear interpolant of
``m_j``; Cauchy weights for a few iterations, then Tukey's biweight or Huber's loss with
the residual scale re-estimated each step).  Occlusions, pixels a view cannot see and
estimator failures come out as large residuals and get no weight.

The metric scale comes from the baseline: a common scale change of all depths moves the
reprojections by an amount proportional to the baseline/depth ratio.  Its sensitivity
(the Schur-complement curvature of the cost along the common log scale, with every other
unknown free to compensate) tells whether the scale is observable; when it is not
(views from one point, tiny baselines), the caller falls back to a relative gauge.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ._cameras import Camera
from ._robust import loss_value, loss_weights

log = logging.getLogger("gouache.enhance")

_EPS = 1e-6
_SIGMA_FLOOR = 1e-4
_SCALE_QUANTILE = 0.3
_SCALE_GAUSS = 0.385  # the 30 % quantile of |N(0, 1)|
_COARSE_SAMPLES = 200
_LEVEL_SIDES = (40, 128)  # pyramid levels (long side in pixels) before the full-resolution maps
_COARSE_ITERATIONS = 10
_FINE_ITERATIONS = 15
_INIT_SHIFTS = (0.05, 0.15, 0.35, 0.7, 1.5)  # u0: far/near depth ratios of about 20, 8, 4, 2.4, 1.7
_CAUCHY_CAP = 10.0  # residual (in scales) an unusable row is charged, beyond Tukey's cut-off
_STEP_TOLERANCE = 1e-5  # in log scale and map units: far below what the data resolve
_COST_TOLERANCE = 1e-5
_SCALE_REFITS = 3
_REFIT_SHRINK = 0.5  # refit at a new residual scale only when it halved (else: the data are that noisy)


@dataclasses.dataclass
class JointView:
    """One view: normalized estimate ``m`` (float64), where it is usable, its confidence,
    its camera and optionally a metric inverse depth (NaN where unknown)."""

    m: np.ndarray
    valid: np.ndarray
    weight: np.ndarray
    camera: Camera
    metric_inv: np.ndarray | None = None


@dataclasses.dataclass
class JointResult:
    lam: np.ndarray
    u: np.ndarray
    sigma: float  # robust residual scale (log depth in units of the views' spread)
    scale_sensitivity: float  # rms residual change per unit change of the common log scale, same units
    disagreement: float  # robust scale of the plain log z-depth differences (0.01: views agree to ~1 %)
    rows: int  # correspondences used
    pairs: list[tuple[int, int]]


class _Stack:
    """All views' maps padded into one array, sampled bilinearly with the interpolant's gradient."""

    def __init__(self, views: list[JointView]) -> None:
        self.h = np.array([v.m.shape[0] for v in views])
        self.w = np.array([v.m.shape[1] for v in views])
        hm, wm = int(self.h.max()), int(self.w.max())
        self.width = wm
        self.plane = hm * wm
        m = np.zeros((len(views), hm, wm), np.float32)
        ok = np.zeros((len(views), hm + 1, wm + 1), bool)
        conf = np.zeros((len(views), hm, wm), np.float32)
        for k, v in enumerate(views):
            h, w = v.m.shape
            m[k, :h, :w] = v.m
            ok[k, :h, :w] = v.valid
            conf[k, :h, :w] = v.weight
        # a cell (y, x)..(y+1, x+1) is usable when its four corners are
        cell = ok[:, :-1, :-1] & ok[:, 1:, :-1] & ok[:, :-1, 1:] & ok[:, 1:, 1:]
        for k, v in enumerate(views):  # the last row/column: interpolation clamps there
            h, w = v.m.shape
            cell[k, h - 1, :w] = ok[k, h - 1, :w] & ok[k, max(h - 2, 0), :w]
            cell[k, :h, w - 1] = ok[k, :h, w - 1] & ok[k, :h, max(w - 2, 0)]
        self.m, self.cell, self.conf = m.reshape(-1), cell.reshape(-1), conf.reshape(-1)
        q = np.array(
            [np.percentile(v.m[v.valid], [2.0, 25.0, 75.0]) if v.valid.any() else (0.0, 0.25, 0.75) for v in views]
        )
        self.floor, self.q25 = q[:, 0], q[:, 1]
        self.q75 = np.maximum(q[:, 2], self.q25 + 1e-3)

    def feasible(self, u: np.ndarray) -> bool:
        """Whether every view keeps 98 % of its pixels at positive inverse depth."""
        return bool(np.all(u > -self.floor + _EPS))

    def spread(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each view's log-depth interquartile spread ``log((q75 + u) / (q25 + u))`` and its
        derivative wrt ``u``: residuals are measured in units of it, so flattening a view
        (``u`` to infinity, which makes every log-depth difference vanish) gains nothing."""
        lo = np.maximum(self.q25 + u, _EPS)
        hi = self.q75 + u
        return np.log(hi / lo), 1.0 / hi - 1.0 / lo

    def sample(self, view: np.ndarray, u: np.ndarray, v: np.ndarray):
        """``(m, dm/du, dm/dv, usable, confidence)`` at ``(u, v)`` (inside) of each row's view."""
        x0 = np.minimum(u.astype(np.intp), np.maximum(self.w[view] - 2, 0))
        y0 = np.minimum(v.astype(np.intp), np.maximum(self.h[view] - 2, 0))
        fx, fy = u - x0, v - y0
        i00 = view * self.plane + y0 * self.width + x0
        a, b = self.m[i00], self.m[i00 + 1]
        c, d = self.m[i00 + self.width], self.m[i00 + self.width + 1]
        top, bottom = a + (b - a) * fx, c + (d - c) * fx
        m = top + (bottom - top) * fy
        gx = (b - a) + ((d - c) - (b - a)) * fy
        gy = bottom - top
        return m, gx, gy, self.cell[i00], self.conf[i00]


@dataclasses.dataclass
class _Rows:
    """Correspondence rows (a sample of view ``src`` looked up in view ``dst``), with every
    quantity that does not depend on the unknowns precomputed."""

    src: np.ndarray
    dst: np.ndarray
    m: np.ndarray
    w: np.ndarray
    KA: np.ndarray  # K_j R_j^T (C_i - C_j)
    KB: np.ndarray  # K_j R_j^T ray_p
    # anchor rows (metric depth of the sample's own view)
    a_view: np.ndarray
    a_m: np.ndarray
    a_log_z: np.ndarray
    a_w: np.ndarray
    groups: _Groups

    @property
    def weight_of_rows(self) -> np.ndarray:
        """Each row's weight from its source pixel alone (anchor rows last)."""
        return np.concatenate([self.w, self.a_w])

    @property
    def count(self) -> int:
        return self.src.size + self.a_view.size


def solve(views: list[JointView], *, loss: str, samples_per_view: int, max_neighbors: int) -> JointResult:
    """Fit every view's ``(lam, u)``; see the module docstring.

    Coarse to fine: the maps are box-filtered to a small pyramid level (wide basins: a
    wrong depth still lands on smoothed values that point the right way), fitted there
    from several common starting shifts (scales from where the optical axes meet), the
    fit with the least robust cost at the best fit's residual scale is refined on a
    middle level, then on the full-resolution maps."""
    n = len(views)
    depth_guess = _axis_depths([v.camera for v in views])
    levels = [_level(views, side) for side in _LEVEL_SIDES] + [views]
    coarse_views = levels[0]
    coarse_samples = [_samples(v, _COARSE_SAMPLES) for v in coarse_views]
    pairs = _neighbours(coarse_views, coarse_samples, depth_guess, max_neighbors)
    stack = _Stack(coarse_views)
    rows = _rows(coarse_views, coarse_samples, pairs)
    fitted = [
        _robust_fit(_initial(coarse_views, coarse_samples, depth_guess, u0), rows, stack, n, loss, _COARSE_ITERATIONS)
        for u0 in _INIT_SHIFTS
    ]
    common = min(f[1] for f in fitted)  # the most consistent fit's residual scale judges them all
    scores = [_objective(f[0], rows, stack, common, loss) for f in fitted]
    log.debug("joint alignment starts: %s", ", ".join(f"u0={u:.2f} cost {c:.3f}" for u, c in zip(_INIT_SHIFTS, scores)))
    theta = fitted[int(np.argmin(scores))][0]
    for level in levels[1:]:
        stack = _Stack(level)
        count = samples_per_view if level is views else max(_COARSE_SAMPLES, samples_per_view // 2)
        rows = _rows(level, [_samples(v, count) for v in level], pairs)
        theta, sigma, hessian, weight_sum = _robust_fit(theta, rows, stack, n, loss, _FINE_ITERATIONS)
    r, _, w, valid = _residuals(theta, rows, stack, raw=True)
    return JointResult(
        theta[0::2].copy(),
        theta[1::2].copy(),
        sigma,
        _scale_sensitivity(hessian, weight_sum),
        _robust_sigma(r, valid, w),
        rows.count,
        pairs,
    )


def log_depth_disagreement(views: list[JointView], pairs: list[tuple[int, int]], samples_per_view: int):
    """Per pair ``(i, j)``: plain log z-depth differences of ``i``'s samples seen in ``j``,
    for views whose ``m`` already is inverse depth (``lam = u = 0``)."""
    stack = _Stack(views)
    samples = [_samples(v, samples_per_view) for v in views]
    out = {}
    for pair in pairs:
        rows = _rows(views, samples, [pair])
        r, _, _, valid = _residuals(np.zeros(2 * len(views)), rows, stack, raw=True)
        out[pair] = r[valid]
    return out


def _objective(theta: np.ndarray, rows: _Rows, stack: _Stack, sigma: float, loss: str) -> float:
    r, _, w, valid = _residuals(theta, rows, stack)
    return _cost(r, np.where(valid, w, rows.weight_of_rows), valid, sigma, loss)


def _level(views: list[JointView], side: int) -> list[JointView]:
    """The views box-filtered so that their long side is at most about ``side`` pixels."""
    out = []
    for v in views:
        f = max(1, int(np.ceil(max(v.m.shape) / side)))
        if f == 1:
            out.append(v)
            continue
        h, w = (v.m.shape[0] // f) * f, (v.m.shape[1] // f) * f

        def pool(a, reduce, h=h, w=w, f=f):
            return reduce(a[:h, :w].reshape(h // f, f, w // f, f), axis=(1, 3))

        c = v.camera
        S = np.array([[1.0 / f, 0.0, -(f - 1) / (2.0 * f)], [0.0, 1.0 / f, -(f - 1) / (2.0 * f)], [0.0, 0.0, 1.0]])
        K = S @ c.K
        metric = None
        if v.metric_inv is not None:
            metric = pool(np.where(np.isfinite(v.metric_inv), v.metric_inv, np.nan), np.mean)
        out.append(
            JointView(
                pool(v.m, np.mean),
                pool(v.valid, np.all),
                pool(v.weight, np.mean),
                Camera(K, np.linalg.inv(K), c.R, c.C),
                metric,
            )
        )
    return out


# -- setting up ------------------------------------------------------------------------------


def _samples(view: JointView, count: int) -> tuple[np.ndarray, np.ndarray]:
    """About ``count`` pixels on a regular grid where the view is usable and confident."""
    usable = view.valid & (view.weight > 0.3)
    total = int(usable.sum())
    if total == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    step = max(1, int(np.floor(np.sqrt(total / count))))
    h, w = view.m.shape
    ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    ys, xs = ys.ravel(), xs.ravel()
    keep = usable[ys, xs]
    return ys[keep], xs[keep]


def _axis_depths(cams: list[Camera]) -> np.ndarray:
    """Each camera's distance to the point nearest to all optical axes (where the views
    look), or 1 when the axes do not meet in front of the cameras."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c in cams:
        P = np.eye(3) - np.outer(c.axis, c.axis)
        A += P
        b += P @ c.C
    depths = np.ones(len(cams))
    if np.linalg.cond(A) > 1e8:
        return depths
    X = np.linalg.solve(A, b)
    along = np.array([(X - c.C) @ c.axis for c in cams])
    spread = max(float(np.ptp([c.C for c in cams], axis=0).max()), 1e-12)
    if np.all(along > 0.05 * spread):
        depths = along
    return depths


def _initial(views: list[JointView], samples, depth_guess: np.ndarray, u0: float) -> np.ndarray:
    theta = np.empty(2 * len(views))
    for k, (v, (ys, xs)) in enumerate(zip(views, samples)):
        med = float(np.median(v.m[ys, xs])) if ys.size else 0.5
        theta[2 * k] = -np.log(depth_guess[k] * max(med + u0, _EPS))
        theta[2 * k + 1] = u0
    return theta


def _rays(cam: Camera, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    pix = np.stack([xs, ys, np.ones(xs.size)]).astype(np.float64)
    return (cam.R @ (cam.K_inv @ pix)).T  # world directions with camera z = 1


def _neighbours(views: list[JointView], samples, depth_guess: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Directed pairs (i, j): for each view, the views facing its way (axes < 90 degrees
    apart) that see most of its samples at the guessed depth; both directions kept."""
    n = len(views)
    chosen: set[tuple[int, int]] = set()
    for i in range(n):
        ys, xs = samples[i]
        if ys.size == 0:
            continue
        points = views[i].camera.C + depth_guess[i] * _rays(views[i].camera, ys, xs)
        scores = []
        for j in range(n):
            cj = views[j].camera
            if j == i or cj.axis @ views[i].camera.axis <= 0:
                continue
            Y = (points - cj.C) @ cj.R
            with np.errstate(divide="ignore", invalid="ignore"):
                P = Y @ cj.K.T
                u, v = P[:, 0] / P[:, 2], P[:, 1] / P[:, 2]
            h, w = views[j].m.shape
            inside = (Y[:, 2] > 0) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
            scores.append((float(inside.mean()), j))
        for score, j in sorted(scores, reverse=True)[:limit]:
            if score >= 0.05:
                chosen.update({(i, j), (j, i)})
    return sorted(chosen)


def _rows(views: list[JointView], samples, pairs: list[tuple[int, int]]) -> _Rows:
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("src", "dst", "m", "w", "KA", "KB")}
    rays = [_rays(v.camera, ys, xs) for v, (ys, xs) in zip(views, samples)]
    for i, j in pairs:
        ys, xs = samples[i]
        ci, cj = views[i].camera, views[j].camera
        A = cj.R.T @ (ci.C - cj.C)
        B = rays[i] @ cj.R
        parts["src"].append(np.full(ys.size, i))
        parts["dst"].append(np.full(ys.size, j))
        parts["m"].append(views[i].m[ys, xs])
        parts["w"].append(views[i].weight[ys, xs])
        parts["KA"].append(np.broadcast_to(cj.K @ A, (ys.size, 3)))
        parts["KB"].append(B @ cj.K.T)
    cat = {k: (np.concatenate(v) if v else np.empty((0, 3) if k in ("KA", "KB") else 0)) for k, v in parts.items()}
    anchors: dict[str, list[np.ndarray]] = {"view": [], "m": [], "log_z": [], "w": []}
    for k, (v, (ys, xs)) in enumerate(zip(views, samples)):
        if v.metric_inv is None:
            continue
        inv = v.metric_inv[ys, xs]
        keep = np.isfinite(inv) & (inv > 0)
        anchors["view"].append(np.full(int(keep.sum()), k))
        anchors["m"].append(v.m[ys, xs][keep])
        anchors["log_z"].append(-np.log(inv[keep]))
        anchors["w"].append(v.weight[ys, xs][keep])
    a = {k: (np.concatenate(x) if x else np.empty(0)) for k, x in anchors.items()}
    counts = [samples[i][0].size for i, _ in pairs] + [x.size for x in anchors["view"]]
    cols = [(2 * i, 2 * i + 1, 2 * j, 2 * j + 1) for i, j in pairs]
    cols += [(2 * int(x[0]), 2 * int(x[0]) + 1) * 2 if x.size else (0, 0, 0, 0) for x in anchors["view"]]
    counts_arr = np.array(counts, dtype=np.intp)
    starts = np.concatenate([[0], np.cumsum(counts_arr)[:-1]]).astype(np.intp) if counts else np.empty(0, np.intp)
    keep = counts_arr > 0
    groups = _Groups(starts[keep], counts_arr[keep], np.array(cols, dtype=np.intp).reshape(-1, 4)[keep], 2 * len(views))
    return _Rows(
        cat["src"].astype(np.intp),
        cat["dst"].astype(np.intp),
        cat["m"],
        cat["w"],
        cat["KA"],
        cat["KB"],
        a["view"].astype(np.intp),
        a["m"],
        a["log_z"],
        a["w"],
        groups,
    )


# -- residuals --------------------------------------------------------------------------------


def _residuals(theta: np.ndarray, rows: _Rows, stack: _Stack, *, raw: bool = False):
    """``(r, J, w, valid)`` for every row: residual, its derivatives wrt the four unknowns
    of the row's group, the row's weight, and whether it could be evaluated.  ``raw``:
    plain log z-depth differences, not divided by the views' spread."""
    lam, u = theta[0::2], theta[1::2]
    n_rows = rows.src.size
    r = np.zeros(n_rows)
    J = np.zeros((n_rows, 4))
    w = np.zeros(n_rows)
    di = rows.m + u[rows.src]
    ok = (di > _EPS) & stack.feasible(u)
    z = np.exp(-lam[rows.src]) / np.where(ok, di, 1.0)
    P = rows.KA + z[:, None] * rows.KB
    ok &= P[:, 2] > _EPS
    with np.errstate(divide="ignore", invalid="ignore"):
        qu, qv = P[:, 0] / P[:, 2], P[:, 1] / P[:, 2]
    ok &= (qu >= 0) & (qu <= stack.w[rows.dst] - 1) & (qv >= 0) & (qv <= stack.h[rows.dst] - 1)
    idx = np.flatnonzero(ok)
    dst = rows.dst[idx]
    mq, gx, gy, usable, conf = stack.sample(dst, qu[idx], qv[idx])
    dj = mq + u[dst]
    good = usable & (dj > _EPS)
    idx, dst, mq, gx, gy, conf, dj = (x[good] for x in (idx, dst, mq, gx, gy, conf, dj))
    Pz, KBi, Pi, zi = P[idx, 2], rows.KB[idx], P[idx], z[idx]
    r[idx] = np.log(Pz) + lam[dst] + np.log(dj)  # P_z is camera j's z-depth (K's last row is 0 0 1)
    dqu = (KBi[:, 0] * Pz - Pi[:, 0] * KBi[:, 2]) / Pz**2
    dqv = (KBi[:, 1] * Pz - Pi[:, 1] * KBi[:, 2]) / Pz**2
    dr_dz = KBi[:, 2] / Pz + (gx * dqu + gy * dqv) / dj
    J[idx, 0] = -zi * dr_dz
    J[idx, 1] = -zi / di[idx] * dr_dz
    J[idx, 2] = 1.0
    J[idx, 3] = 1.0 / dj
    w[idx] = rows.w[idx] * conf
    valid = np.zeros(n_rows, bool)
    valid[idx] = True
    spread, d_spread = stack.spread(u)
    if raw:
        spread, d_spread = np.ones_like(spread), np.zeros_like(d_spread)
    s = 0.5 * (spread[rows.src] + spread[rows.dst])
    r /= s
    J /= s[:, None]
    J[:, 1] -= r / s * 0.5 * d_spread[rows.src]
    J[:, 3] -= r / s * 0.5 * d_spread[rows.dst]
    if rows.a_view.size:
        da = rows.a_m + u[rows.a_view]
        a_ok = da > _EPS
        ra = np.where(a_ok, lam[rows.a_view] + np.log(np.where(a_ok, da, 1.0)) + rows.a_log_z, 0.0)
        Ja = np.zeros((rows.a_view.size, 4))
        Ja[:, 0] = 1.0
        Ja[:, 1] = np.where(a_ok, 1.0 / np.where(a_ok, da, 1.0), 0.0)
        sa = spread[rows.a_view]
        ra /= sa
        Ja /= sa[:, None]
        Ja[:, 1] -= ra / sa * d_spread[rows.a_view]
        r, J = np.concatenate([r, ra]), np.concatenate([J, Ja])
        w = np.concatenate([w, np.where(a_ok, rows.a_w, 0.0)])
        valid = np.concatenate([valid, a_ok])
    return r, J, w, valid


def _normal_equations(J: np.ndarray, weights: np.ndarray, r: np.ndarray, groups: _Groups, size: int):
    """``J^T W J`` and ``J^T W r``: rows come in contiguous groups (one per pair of views,
    one per anchored view) that share their four unknowns, so each group is one small
    product, and all are scattered into place at once."""
    wj = weights[:, None] * J
    blocks = np.empty((groups.starts.size, 4, 4))
    grads = np.empty((groups.starts.size, 4))
    for k, (start, count) in enumerate(zip(groups.starts, groups.counts)):
        rows = slice(start, start + count)
        blocks[k] = wj[rows].T @ J[rows]
        grads[k] = wj[rows].T @ r[rows]
    H = np.zeros(size * size)
    g = np.zeros(size)
    np.add.at(H, groups.flat_pairs, blocks.reshape(-1))  # add.at: anchor groups repeat columns
    np.add.at(g, groups.cols.reshape(-1), grads.reshape(-1))
    return H.reshape(size, size), g


@dataclasses.dataclass(frozen=True)
class _Groups:
    starts: np.ndarray  # first row of each group (groups are contiguous)
    counts: np.ndarray
    cols: np.ndarray  # (groups, 4) unknowns of the group's rows
    size: int  # number of unknowns

    @property
    def flat_pairs(self) -> np.ndarray:
        """Flat indices into the ``size x size`` normal matrix of each group's 4x4 block."""
        return (self.cols[:, :, None] * self.size + self.cols[:, None, :]).reshape(-1)


def _robust_sigma(r: np.ndarray, valid: np.ndarray, w: np.ndarray) -> float:
    """Residual scale from the 30 % quantile of ``|r|`` (consistent for Gaussian noise, and
    unlike the median still right when occlusions make up nearly half the rows)."""
    sel = np.abs(r[valid & (w > 0)])
    if sel.size == 0:
        return 1.0
    k = int(_SCALE_QUANTILE * (sel.size - 1))
    return max(float(np.partition(sel, k)[k]) / _SCALE_GAUSS, _SIGMA_FLOOR)


def _cost(r: np.ndarray, w: np.ndarray, valid: np.ndarray, sigma: float, loss: str) -> float:
    """Weighted mean robust loss; rows that cannot be evaluated count as outliers (the fit
    must not win by pushing points out of view)."""
    t = r / sigma
    if loss == "cauchy":
        rho, cap = np.log1p(t * t), float(np.log1p(_CAUCHY_CAP**2))
    else:
        rho, cap = loss_value(t, loss), float(loss_value(np.array([_CAUCHY_CAP]), loss)[0])
    return float((w * np.where(valid, rho, cap)).sum() / max(float(w.sum()), 1e-300))


def _robust_fit(theta: np.ndarray, rows: _Rows, stack: _Stack, n: int, loss: str, iterations: int):
    """M-estimation with a re-estimated scale: Cauchy at the starting residual scale, then
    ``loss`` at the residual scale of that fit, refitted while the scale keeps shrinking.
    Each stage is a Levenberg-Marquardt run on a fixed objective, so it converges."""
    stages = [("cauchy", max(2, iterations // 4))] + [(loss, iterations)] * _SCALE_REFITS
    sigma = prev = None
    result = None
    for kind, its in stages:
        r, _, w, valid = _residuals(theta, rows, stack)
        sigma = _robust_sigma(r, valid, w)
        if kind != "cauchy" and prev is not None and sigma > _REFIT_SHRINK * prev:
            break
        prev = sigma if kind != "cauchy" else None
        result = _levenberg_marquardt(theta, rows, stack, n, kind, sigma, its)
        theta = result[0]
    r, _, w, valid = _residuals(theta, rows, stack)
    return theta, _robust_sigma(r, valid, w), result[1], result[2]


def _levenberg_marquardt(
    theta: np.ndarray, rows: _Rows, stack: _Stack, n: int, kind: str, sigma: float, iterations: int
):
    """Minimize the weighted mean of ``rho(r / sigma)`` (``kind``: cauchy, tukey, huber)."""
    size = 2 * n
    base = rows.weight_of_rows
    r, J, w, valid = _residuals(theta, rows, stack)
    cost = _cost(r, np.where(valid, w, base), valid, sigma, kind)
    mu = 1e-3
    hessian = np.zeros((size, size))
    weight_sum = 0.0
    for _ in range(iterations):
        t = r / sigma
        robust = 1.0 / (1.0 + t * t) if kind == "cauchy" else loss_weights(t, kind)
        weights = w * robust * valid
        weight_sum = float(weights.sum())
        hessian, g = _normal_equations(J, weights, r, rows.groups, size)
        damped = hessian + mu * np.diag(np.diag(hessian)) + 1e-12 * (np.trace(hessian) + 1.0) * np.eye(size)
        try:
            step = -np.linalg.solve(damped, g)
        except np.linalg.LinAlgError:
            break
        trial = theta + step
        r2, J2, w2, valid2 = _residuals(trial, rows, stack)
        new = _cost(r2, np.where(valid2, w2, base), valid2, sigma, kind)
        if new < cost:
            done = cost - new < _COST_TOLERANCE * cost or np.abs(step).max() < _STEP_TOLERANCE
            theta, r, J, w, valid, cost = trial, r2, J2, w2, valid2, new
            mu = max(mu / 3.0, 1e-7)
            if done:
                break
        else:
            mu *= 10.0
            if mu > 1e6:
                break
    return theta, hessian, weight_sum


def _scale_sensitivity(hessian: np.ndarray, weight_sum: float) -> float:
    """RMS residual change per unit common log scale when every other unknown compensates
    (``sqrt`` of the Schur complement along the common-scale direction, per unit weight)."""
    size = hessian.shape[0]
    n = size // 2
    g = np.zeros(size)
    g[0::2] = 1.0 / np.sqrt(n)
    basis = np.linalg.qr(np.column_stack([g, np.eye(size)[:, 1:]]))[0]
    basis[:, 0] = g
    h = basis.T @ hessian @ basis
    rest = h[1:, 1:] + 1e-12 * (np.trace(h) + 1.0) * np.eye(size - 1)
    schur = h[0, 0] - h[0, 1:] @ np.linalg.solve(rest, h[1:, 0])
    return float(np.sqrt(max(schur, 0.0) * n / max(weight_sum, 1e-300)))
