"""The worker: loads the model once, then turns units into output files and result records.

The same class runs in-process and inside each Ray actor, so both paths make the same
files for the same seeds.  Write path: an output whose file exists and decodes is done
and is never written again; a new output is written to a temporary file and renamed into
place, so a worker killed at any moment leaves either nothing or a complete file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ._gouache import save_image
from ._job import WorkSpec
from ._plan import Task, Unit
from ._results import ItemResult, is_complete

log = logging.getLogger("gouache.batch")


class Worker:
    """Holds one loaded model (``close()``, context manager) and runs units on it."""

    def __init__(self, spec: WorkSpec, *, threads: int | None = None) -> None:
        self.spec = spec
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.model = None
        self.service = None
        self._depth_estimator = None
        t0 = time.perf_counter()
        if spec.kind == "generate":
            self.model = spec.model.load(threads)
        else:
            from gouache.enhance import EnhanceService

            config = spec.enhance
            if threads is not None and config.threads == "auto":
                config = dataclasses.replace(config, threads=threads)
            self.service = EnhanceService(config).load()
        self.load_seconds = time.perf_counter() - t0

    def close(self) -> None:
        model, self.model = self.model, None
        service, self.service = self.service, None
        if model is not None:
            model.close()
        if service is not None:
            service.unload()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, unit: Unit) -> list[ItemResult]:
        if unit.kind == "generate":
            return [self._task(t, self._generate) for t in unit.tasks]
        return self._scene(unit)

    # -- one task ------------------------------------------------------------------------

    def _task(self, task: Task, make: Callable[[Task, bool], ItemResult]) -> ItemResult:
        """Skip a complete output; otherwise make it, recording any error instead of raising."""
        scene = getattr(task.item, "scene", None)
        if is_complete(task.output):
            return ItemResult(task.key, "skipped", task.output, task.seed, scene, worker=self.name)
        replace = Path(task.output).exists()  # there, but unreadable: not ours to keep as done
        if replace:
            log.warning("%s exists but is not a readable image: making it again", task.output)
        t0 = time.perf_counter()
        try:
            result = make(task, replace)
        except Exception as exc:  # noqa: BLE001 - one bad item never stops the batch
            log.info("item %s failed: %s: %s", task.key, type(exc).__name__, exc)
            return ItemResult(
                task.key,
                "failed",
                None,
                task.seed,
                scene,
                error=f"{type(exc).__name__}: {exc}",
                timings={"item": time.perf_counter() - t0},
                worker=self.name,
                finished_at=time.time(),
            )
        result.timings["item"] = time.perf_counter() - t0
        result.finished_at = time.time()
        return result

    def _save(self, image: Image.Image, path: str, infotext: str | None, overwrite: bool) -> float:
        t0 = time.perf_counter()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if path.endswith(".jpg") and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")  # JPEG has no alpha (use png or webp to keep it)
        save_image(image, path, infotext=infotext, overwrite=overwrite)
        return time.perf_counter() - t0

    # -- generation ----------------------------------------------------------------------

    def _generate(self, task: Task, overwrite: bool) -> ItemResult:
        item = task.item
        res = self.model.generate(item.prompt, seed=task.seed, **item.generate_kwargs(self.spec.defaults))
        write = self._save(res.images[0], task.output, res.infotexts[0], overwrite)
        return ItemResult(
            task.key,
            "done",
            task.output,
            res.seeds[0],
            None,
            dict(res.parameters),
            {**res.timings, "write": write},
            worker=self.name,
        )

    # -- enhancement: one scene ------------------------------------------------------------

    def _scene(self, unit: Unit) -> list[ItemResult]:
        todo = [t for t in unit.tasks if not is_complete(t.output)]
        if not todo:
            return [self._task(t, self._never) for t in unit.tasks]
        depths, depth_errors, depth_kind = self._scene_depths(unit)
        aligned, alignment = self._align(unit, depths)
        reference, reference_error = self._reference(unit)

        def make(task: Task, overwrite: bool) -> ItemResult:
            key = task.key
            if key in depth_errors:
                raise depth_errors[key]
            if reference_error is not None:
                raise reference_error
            item = task.item
            image = self.service.enhance(
                item.image,
                prompt=item.prompt,
                depth_map=aligned.get(key),
                mask=item.mask,
                negative_prompt=item.negative_prompt,
                subject=item.subject,
                strength=item.strength,
                controlnet_scale=item.controlnet_scale,
                seed=task.seed,
            )
            if reference is not None:
                image = match_to_reference(image, reference, self.spec.enhance.color_match or "lab_meanstd")
            write = self._save(image, task.output, None, overwrite)
            params = {
                "prompt": item.prompt,
                "subject": item.subject,
                "negative_prompt": item.negative_prompt,
                "strength": item.strength,
                "controlnet_scale": item.controlnet_scale,
                "seed": task.seed,
                "depth": depth_kind.get(key),
                "depth_alignment": alignment.get(key),
                "color_reference": item.color_reference,
                "config": _config_summary(self.spec.enhance),
            }
            return ItemResult(
                key,
                "done",
                task.output,
                task.seed,
                unit.scene,
                {k: v for k, v in params.items() if v is not None},
                {"write": write},
                worker=self.name,
            )

        return [self._task(t, make) for t in unit.tasks]

    @staticmethod
    def _never(task: Task, overwrite: bool) -> ItemResult:
        raise AssertionError("unreachable: every output of this scene is complete")

    def _scene_depths(self, unit: Unit) -> tuple[dict[str, np.ndarray], dict[str, Exception], dict[str, str]]:
        """Every view's depth: given in the manifest, or estimated (when the scene is aligned
        with poses and the config has a depth model).  All views take part, done or not, so a
        resumed scene is aligned exactly as an uninterrupted one."""
        depths: dict[str, np.ndarray] = {}
        errors: dict[str, Exception] = {}
        kind: dict[str, str] = {}
        posed = all(t.item.pose is not None and t.item.intrinsics is not None for t in unit.tasks)
        config = self.spec.enhance
        for t in unit.tasks:
            try:
                if t.item.depth is not None:
                    depths[t.key], kind[t.key] = load_depth_file(t.item.depth), "given"
                elif posed and len(unit.tasks) > 1 and config.auto_depth and config.depth_model is not None:
                    depths[t.key], kind[t.key] = self._estimate(t.item.image), "estimated"
            except Exception as exc:  # noqa: BLE001 - that view fails, the others go on
                errors[t.key] = exc
        return depths, errors, kind

    def _estimate(self, image_path: str) -> np.ndarray:
        from gouache.enhance import DepthEstimator, load_image

        if self._depth_estimator is None:
            self._depth_estimator = DepthEstimator(self.spec.enhance.depth_model)
        return self._depth_estimator(load_image(image_path, name="image")[0])

    def _align(self, unit: Unit, depths: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, list[float]]]:
        """Align the scene's depth maps to one scale with the views' poses and intrinsics
        (:func:`gouache.enhance.align_depth_scales`); scenes without poses keep their maps."""
        keys = [t.key for t in unit.tasks if t.key in depths]
        tasks = {t.key: t for t in unit.tasks}
        posed = all(tasks[k].item.pose is not None and tasks[k].item.intrinsics is not None for k in keys)
        if len(keys) < 2 or not posed:
            return depths, {}
        from gouache.enhance import align_depth_scales

        poses = [np.asarray(tasks[k].item.pose, np.float64) for k in keys]
        intrinsics = [np.asarray(tasks[k].item.intrinsics, np.float64) for k in keys]
        try:
            out = align_depth_scales([depths[k] for k in keys], poses, intrinsics)
        except Exception as exc:  # noqa: BLE001 - unaligned maps still guide the views
            log.warning(
                "scene %s: depth alignment failed (%s: %s); using the maps as given",
                unit.scene,
                type(exc).__name__,
                exc,
            )
            return depths, {}
        maps, params = (out[0], out[1]) if isinstance(out, tuple) else (out, getattr(out, "params", None))
        aligned = dict(depths)
        aligned.update({k: np.asarray(m, np.float32) for k, m in zip(keys, maps)})
        info = {k: [float(a), float(b)] for k, (a, b) in zip(keys, params)} if params else {k: [] for k in keys}
        return aligned, info

    def _reference(self, unit: Unit) -> tuple[Any, Exception | None]:
        path = next((t.item.color_reference for t in unit.tasks if t.item.color_reference), None)
        if path is None:
            return None, None
        from gouache.enhance import load_image

        try:
            return load_image(path, name="color_reference"), None
        except Exception as exc:  # noqa: BLE001 - reported on every view of the scene
            return None, exc


def load_depth_file(path: str) -> np.ndarray:
    """A depth map from a file: ``.npy`` arrays, or any image :func:`gouache.enhance.load_depth` reads."""
    from gouache.enhance import load_depth

    if path.lower().endswith(".npy"):
        if not Path(path).is_file():
            from gouache import InvalidInputError

            raise InvalidInputError(f"depth file not found: {path!r}")
        return load_depth(np.load(path, allow_pickle=False), name="depth")
    return load_depth(path, name="depth")


def match_to_reference(image: Image.Image, reference: tuple[np.ndarray, np.ndarray | None], method: str) -> Image.Image:
    """``image``'s object colours matched to the scene's colour reference: statistics of the
    opaque pixels of both (all pixels where there is no alpha), the change blended in by
    ``image``'s alpha so the background and the alpha stay as they are."""
    from gouache.enhance import load_image, match_colors

    rgb, alpha = load_image(image, name="enhanced view")
    ref_rgb, ref_alpha = reference
    sel = alpha > 0.5 if alpha is not None else np.ones(rgb.shape[:2], bool)
    ref_sel = ref_alpha > 0.5 if ref_alpha is not None else np.ones(ref_rgb.shape[:2], bool)
    if not sel.any() or not ref_sel.any():
        return image
    matched = match_colors(rgb[sel][None], ref_rgb[ref_sel][None], method=method)[0]
    out = rgb.copy()
    weight = alpha[sel][:, None] if alpha is not None else 1.0
    out[sel] = rgb[sel] + weight * (matched - rgb[sel])
    rgb8 = np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
    if image.mode == "RGBA":
        return Image.fromarray(np.dstack([rgb8, np.asarray(image.getchannel("A"))]))
    return Image.fromarray(rgb8)


def _config_summary(config: Any) -> dict[str, Any]:
    names = (
        "model",
        "controlnet",
        "engine",
        "lightning_steps",
        "strength",
        "cfg_scale",
        "sampler",
        "scheduler",
        "controlnet_scale",
        "working_size",
        "color_match",
    )
    return {
        n: (str(getattr(config, n)) if isinstance(getattr(config, n, None), os.PathLike) else getattr(config, n, None))
        for n in names
    }
