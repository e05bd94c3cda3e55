"""Synthetic multi-view depth scenes with known cameras, for testing depth alignment.

Scenes are ray cast in numpy (spheres and boxes inside a room), so every view's z-depth is
exact; :func:`estimate_like` turns a true depth map into what a monocular estimator
returns (relative inverse depth with an unknown per-view scale and shift, normalized to
``[0, 1]``, blurred at edges, noisy, with wrong patches).  Cameras are pinhole ``K`` plus
4x4 camera-to-world poses in the OpenCV convention (x right, y down, z forward);
:func:`convert_pose` gives the same camera in the OpenGL/Blender convention or as a
world-to-camera matrix.

>>> from gouache.testing import scenes
>>> scene = scenes.spheres_in_room()
>>> K = scenes.intrinsics(128, 128, fov_deg=50)
>>> poses = scenes.orbit(4, step_deg=20)
>>> depth = [scene.render(p, K, 128, 128).depth for p in poses]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = [
    "Box",
    "Estimate",
    "Render",
    "Scene",
    "Sphere",
    "convert_pose",
    "estimate_like",
    "intrinsics",
    "look_at",
    "orbit",
    "spheres_in_room",
]


@dataclasses.dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float


@dataclasses.dataclass(frozen=True)
class Box:
    """Axis-aligned box from corner ``lo`` to corner ``hi``."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class Render:
    """One view: z-depth (distance along the optical axis) and where an object (not the room) is hit."""

    depth: np.ndarray
    objects: np.ndarray


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What :func:`estimate_like` made: the ``map`` (float32, ``[0, 1]`` when normalized),
    the per-view ``scale`` and ``shift`` applied to the true inverse depth before
    normalizing, and the ``corrupted`` pixels (the wrong patches)."""

    map: np.ndarray
    scale: float
    shift: float
    corrupted: np.ndarray


@dataclasses.dataclass(frozen=True)
class Scene:
    """Objects seen from inside a ``room`` (an inside-out box: walls, floor and ceiling);
    without a room, rays that miss every object have infinite depth."""

    objects: tuple[Sphere | Box, ...]
    room: Box | None = None

    def render(self, pose: np.ndarray, K: np.ndarray, width: int, height: int) -> Render:
        """Ray cast the view of an OpenCV camera-to-world ``pose`` with intrinsics ``K``."""
        v, u = np.mgrid[0:height, 0:width].astype(np.float64)
        rays = np.linalg.inv(np.asarray(K, float)) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
        d = (np.asarray(pose, float)[:3, :3] @ rays).T  # camera z = 1: the ray parameter is the z-depth
        o = np.asarray(pose, float)[:3, 3]
        best = np.full(u.size, np.inf)
        for obj in self.objects:
            best = np.minimum(best, _hit(obj, o, d))
        hit_object = np.isfinite(best)
        if self.room is not None:
            best = np.minimum(best, _slabs(o, d, self.room)[1])
        return Render(best.reshape(height, width), hit_object.reshape(height, width))


def spheres_in_room() -> Scene:
    """Three spheres and a box around the origin, in an off-centre room (the background
    changes with the view, and no two views see a wall the same way)."""
    return Scene(
        objects=(
            Sphere((0.3, 0.0, -0.2), 1.0),
            Sphere((1.6, -0.4, 0.8), 0.5),
            Sphere((-0.9, 0.6, 1.1), 0.45),
            Box((-1.9, -1.0, -0.6), (-1.1, 0.2, 0.4)),
        ),
        room=Box((-7.0, -1.0, -6.0), (9.0, 6.0, 10.0)),
    )


def look_at(
    eye: Sequence[float], target: Sequence[float] = (0.0, 0.0, 0.0), up: Sequence[float] = (0.0, 1.0, 0.0)
) -> np.ndarray:
    """4x4 camera-to-world pose (OpenCV axes) of a camera at ``eye`` looking at ``target``
    (``up`` is the world's up; the camera's y axis points down)."""
    eye = np.asarray(eye, float)
    z = np.asarray(target, float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, np.cross(z, x), z, eye
    return pose


def intrinsics(width: int, height: int, *, fov_deg: float | None = None, focal: float | None = None) -> np.ndarray:
    """Pinhole ``K`` with the principal point at the image centre (integer pixel coordinates
    are pixel centres); give the horizontal field of view or the focal length in pixels."""
    if (fov_deg is None) == (focal is None):
        raise ValueError("give exactly one of fov_deg= and focal=")
    f = focal if focal is not None else 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def orbit(
    n: int,
    *,
    step_deg: float = 20.0,
    start_deg: float = 0.0,
    radius: float = 5.0,
    height: float = 1.2,
    target: Sequence[float] = (0.0, 0.0, 0.0),
    wobble: float = 0.0,
) -> list[np.ndarray]:
    """``n`` cameras on a circle around ``target``, ``step_deg`` apart, looking at it.
    ``wobble`` varies each camera's radius and height by up to that fraction."""
    poses = []
    for k in range(n):
        a = np.radians(start_deg + k * step_deg)
        r = radius * (1.0 + wobble * np.sin(1.7 * k + 0.3))
        y = height + radius * wobble * np.cos(2.3 * k)
        eye = np.asarray(target, float) + np.array([r * np.sin(a), y, r * np.cos(a)])
        poses.append(look_at(eye, target))
    return poses


_GL_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


def convert_pose(pose: np.ndarray, *, convention: str = "opencv", pose_type: str = "c2w") -> np.ndarray:
    """An OpenCV camera-to-world ``pose`` as the same camera in another ``convention``
    (``"opencv"`` or ``"opengl"``: x right, y up, looking down -z) and ``pose_type``
    (``"c2w"`` camera-to-world or ``"w2c"`` world-to-camera)."""
    if convention not in ("opencv", "opengl") or pose_type not in ("c2w", "w2c"):
        raise ValueError(f"unknown convention {convention!r} or pose_type {pose_type!r}")
    out = np.asarray(pose, float) @ (_GL_FLIP if convention == "opengl" else np.eye(4))
    return np.linalg.inv(out) if pose_type == "w2c" else out


def estimate_like(
    depth: np.ndarray,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.3, 3.0),
    shift: tuple[float, float] = (-0.5, 0.5),
    noise: float = 0.0,
    blur: int = 0,
    bad_patches: int = 0,
    normalize: bool = True,
) -> Estimate:
    """What a monocular estimator makes of the true z-``depth``: inverse depth blurred over
    ``blur`` pixels (edges smeared like a network's), with multiplicative ``noise``, times a
    random scale plus a random shift (relative to the map's range), ``bad_patches`` square
    patches of wrong values, then normalized to ``[0, 1]`` at the 0.5/99.5 percentiles
    (near = 1), as :func:`gouache.enhance.depth.estimate_depth` returns.  Infinite depth
    gives inverse depth 0.  ``Estimate.scale``/``shift``: ``map = scale * inv + shift``
    (before clipping)."""
    inv = np.where(np.isfinite(depth) & (depth > 0), 1.0 / np.where(depth > 0, depth, 1.0), 0.0)
    if blur:
        inv = _box_blur(inv, blur)
    if noise:
        inv = inv * (1.0 + noise * rng.standard_normal(inv.shape))
    span = float(np.ptp(inv)) or 1.0
    a, b = rng.uniform(*scale), rng.uniform(*shift) * span
    m = a * inv + b
    h, w = m.shape
    corrupted = np.zeros(m.shape, dtype=bool)
    for _ in range(bad_patches):
        side = max(2, min(h, w) // 10)
        y, x = rng.integers(0, h - side), rng.integers(0, w - side)
        m[y : y + side, x : x + side] = rng.uniform(m.min(), m.max())
        corrupted[y : y + side, x : x + side] = True
    if not normalize:
        return Estimate(m.astype(np.float32), float(a), float(b), corrupted)
    lo, hi = np.percentile(m, [0.5, 99.5])
    out = np.clip((m - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return Estimate(out, float(a / (hi - lo)), float((b - lo) / (hi - lo)), corrupted)


def _hit(obj: Sphere | Box, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    if isinstance(obj, Sphere):
        oc = o - np.asarray(obj.center, float)
        a = (d * d).sum(axis=1)
        b = d @ oc
        c = oc @ oc - obj.radius**2
        disc = b * b - a * c
        t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0.0))) / a, np.inf)
        return np.where(t > 1e-9, t, np.inf)
    near, far = _slabs(o, d, obj)
    return np.where((near <= far) & (near > 1e-9), near, np.inf)


def _slabs(o: np.ndarray, d: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (np.asarray(box.lo, float) - o) / d
        t2 = (np.asarray(box.hi, float) - o) / d
    return np.nanmax(np.minimum(t1, t2), axis=1), np.nanmin(np.maximum(t1, t2), axis=1)


def _box_blur(x: np.ndarray, radius: int) -> np.ndarray:
    k = 2 * radius + 1
    pad = np.pad(x, radius, mode="edge")
    c = np.cumsum(np.cumsum(pad, axis=0), axis=1)
    c = np.pad(c, ((1, 0), (1, 0)))
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)
