"""Pinhole cameras from user poses and intrinsics, in one internal convention.

Internally a camera is OpenCV-style (x right, y down, z forward) with ``R`` the
camera-to-world rotation and ``C`` the camera centre; integer pixel coordinates are
pixel centres.  Users pass 4x4 poses in the OpenCV or OpenGL/Blender axis convention,
camera-to-world (``"c2w"``, NeRF/Blender/most renderers) or world-to-camera (``"w2c"``,
COLMAP, gsplat view matrices).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..._errors import InvalidInputError

CONVENTIONS = ("opencv", "opengl")
POSE_TYPES = ("c2w", "w2c")
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclasses.dataclass(frozen=True)
class Camera:
    K: np.ndarray
    K_inv: np.ndarray
    R: np.ndarray  # camera-to-world rotation, OpenCV axes
    C: np.ndarray  # camera centre in world coordinates

    @property
    def axis(self) -> np.ndarray:
        """The optical axis (unit vector, world coordinates)."""
        return self.R[:, 2]


def cameras(poses: Any, intrinsics: Any, n: int, convention: str, pose_type: str) -> list[Camera] | None:
    """``n`` cameras from the user's ``poses`` and ``intrinsics``, or None without poses."""
    if convention not in CONVENTIONS:
        raise InvalidInputError(f"convention must be one of {', '.join(CONVENTIONS)}; got {convention!r}")
    if pose_type not in POSE_TYPES:
        raise InvalidInputError(f"pose_type must be one of {', '.join(POSE_TYPES)}; got {pose_type!r}")
    if poses is None:
        if intrinsics is not None:
            raise InvalidInputError("intrinsics were given without poses; pass poses (4x4 matrices) too")
        return None
    if intrinsics is None:
        raise InvalidInputError("poses need intrinsics: a 3x3 K shared by all views or one per view")
    pose_arr = np.asarray(poses, dtype=np.float64)
    if pose_arr.shape != (n, 4, 4) or not np.all(np.isfinite(pose_arr)):
        raise InvalidInputError(
            f"poses must be {n} finite 4x4 matrices (one per depth map); got shape {pose_arr.shape}"
        )
    k_arr = np.asarray(intrinsics, dtype=np.float64)
    if k_arr.shape == (3, 3):
        k_arr = np.broadcast_to(k_arr, (n, 3, 3))
    if k_arr.shape != (n, 3, 3) or not np.all(np.isfinite(k_arr)):
        raise InvalidInputError(f"intrinsics must be one 3x3 K or {n} of them; got shape {np.shape(intrinsics)}")
    return [_camera(pose_arr[i], k_arr[i], i, convention, pose_type) for i in range(n)]


def _camera(pose: np.ndarray, K: np.ndarray, i: int, convention: str, pose_type: str) -> Camera:
    if K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] == 0 or np.any(K[2, :2] != 0):
        raise InvalidInputError(
            f"intrinsics[{i}] must be a pinhole K with positive focal lengths and last row (0, 0, 1); got {K.tolist()}"
        )
    if not np.allclose(pose[3], [0.0, 0.0, 0.0, 1.0]):
        raise InvalidInputError(f"poses[{i}] last row must be (0, 0, 0, 1); got {pose[3].tolist()}")
    R = pose[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise InvalidInputError(f"poses[{i}] rotation part is not a rotation (scaled, sheared or mirrored pose?)")
    c2w = np.linalg.inv(pose) if pose_type == "w2c" else pose
    if convention == "opengl":
        c2w = c2w @ _GL_TO_CV
    K = K / K[2, 2]
    return Camera(K.copy(), np.linalg.inv(K), c2w[:3, :3].copy(), c2w[:3, 3].copy())
