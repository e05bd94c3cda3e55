"""gouache.batch on Ray Data: a local Ray cluster started here (2 CPUs, a small object
store), two actors, the real engine on forged tiny models.

* a 12-item generation job on 2 actors, one actor SIGKILLed mid-job: every item is made
  once (no output file is ever replaced), the results manifest has each item once, and
  the pixels equal the in-process loop's;
* a second run resumes and does nothing;
* a 3-scene x 4-view enhancement job on 2 actors with one unreadable view: that view is
  reported, the other 11 equal the in-process loop's, each scene stays on one actor.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import ray  # the test extra installs gouache[ray]
from PIL import Image

import gouache.batch as gb  # noqa: E402
from gouache.enhance import EnhanceConfig  # noqa: E402
from gouache.testing import forge  # noqa: E402

ACTOR_TITLE = "MapBatches(RayWorker)"  # how Ray names the map actors' processes


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, object_store_memory=500 * 2**20, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def outputs(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): pixels(p) for p in sorted(folder.rglob("*.png"))}


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def gen_job():
    items = [
        gb.GenerateItem(id=f"{k:02d}", prompt=f"a {c} cube on a table", width=64, height=64, steps=2, cfg_scale=1.0)
        for k, c in enumerate(["red", "green", "blue", "gold"] * 3)
    ]
    return lambda out: gb.BatchJob(
        items, out, model=gb.ModelSpec(forge.sd1_tiny(), taesd=forge.taesd(), engine="sdcpp")
    )


@pytest.fixture(scope="module")
def gen_local(gen_job, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen_local")
    summary = gb.run_batch(gen_job(out))
    assert summary.done == 12
    return outputs(out)


class Watcher(threading.Thread):
    """Notes when each output first appears (inode, mtime) and SIGKILLs one busy actor
    once ``kill_after`` outputs exist; stops by itself after ``limit`` seconds."""

    def __init__(self, folder: Path, kill_after: int, limit: float = 600) -> None:
        super().__init__(daemon=True)
        self.folder, self.kill_after, self.limit = folder, kill_after, limit
        self.first_seen: dict[str, tuple[int, int]] = {}
        self.killed: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        t_end = time.monotonic() + self.limit
        while not self.stop.is_set() and time.monotonic() < t_end:
            for p in self.folder.glob("[!.]*.png"):  # outputs, not the writer's temporaries
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                self.first_seen.setdefault(p.name, (st.st_ino, st.st_mtime_ns))
            if self.killed is None and len(self.first_seen) >= self.kill_after:
                self.killed = self._kill_one_actor()
            time.sleep(0.02)

    @staticmethod
    def _kill_one_actor() -> int | None:
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if ACTOR_TITLE in " ".join(proc.info["cmdline"] or []):
                proc.send_signal(signal.SIGKILL)
                return proc.info["pid"]
        return None


def test_actor_killed_mid_job_loses_and_duplicates_nothing_and_matches_the_loop(cluster, gen_job, gen_local, tmp_path):
    watcher = Watcher(tmp_path, kill_after=3)
    watcher.start()
    try:
        summary = gb.run_batch(gen_job(tmp_path), ray=gb.RayOptions(actors=2))
    finally:
        watcher.stop.set()
        watcher.join()
    assert watcher.killed is not None, "no actor process was found to kill"
    assert not psutil.pid_exists(watcher.killed)
    assert (summary.runner, summary.actors, summary.failed) == ("ray", 2, 0)
    # an item the killed actor had written but not yet reported is found complete by the retry: skipped, not redone
    assert summary.done + summary.skipped == 12 and summary.skipped <= 1
    recs = records(tmp_path)
    assert sorted(r["id"] for r in recs) == [f"{k:02d}" for k in range(12)]  # each item once
    assert {r["status"] for r in recs} == {"done"}
    workers = {r["worker"] for r in recs}
    assert len(workers) >= 3, f"the killed actor was not replaced: {workers}"  # 2 actors + the restarted one
    final = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.glob("[!.]*.png")}
    assert final == watcher.first_seen  # no output was written twice (a rename would change the inode)
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert leftovers == []  # no temporaries, no lock, no attempt counters
    got = outputs(tmp_path)
    assert got.keys() == gen_local.keys()
    for name, image in gen_local.items():
        assert np.array_equal(got[name], image), name  # same seeds, same pixels as the in-process loop

    again = gb.run_batch(gen_job(tmp_path), ray=gb.RayOptions(actors=2))
    assert (again.done, again.skipped, again.failed) == (0, 12, 0)  # resumes and does nothing
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.glob("[!.]*.png")} == final
    assert records(tmp_path) == recs


# --------------------------------------------------------------------------- enhancement


def write_scenes(root: Path) -> Path:
    """3 scenes x 4 RGBA views with depth maps (.npy and 16-bit PNG); scene s0 has poses
    and intrinsics (4 cameras orbiting the origin); view s2/v1 is not an image."""
    rng = np.random.default_rng(0)
    rows = []
    K = [[80.0, 0, 48], [0, 80.0, 32], [0, 0, 1]]
    for s in range(3):
        folder = root / f"s{s}"
        folder.mkdir(parents=True)
        for v in range(4):
            rgb = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
            alpha = np.zeros((64, 96), np.uint8)
            alpha[12:52, 20:76] = 255
            image = folder / f"v{v}.png"
            Image.fromarray(np.dstack([rgb, alpha])).save(image)
            depth = np.tile(np.linspace(1.0, 2.0 + v, 96, dtype=np.float32), (64, 1))
            if v % 2:
                depth_file = folder / f"v{v}_depth.npy"
                np.save(depth_file, depth)
            else:
                depth_file = folder / f"v{v}_depth.png"
                Image.fromarray((depth / depth.max() * 65535).astype(np.uint16)).save(depth_file)
            row = {
                "scene": f"s{s}",
                "id": f"v{v}",
                "image": str(image.relative_to(root)),
                "depth": str(depth_file.relative_to(root)),
                "prompt": f"a statue, scene {s}",
            }
            if s == 0:
                a = math.radians(20 * v)
                pose = np.eye(4)
                pose[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
                pose[:3, 3] = pose[:3, :3] @ np.array([0.0, 0.0, -4.0])
                row.update(pose=pose.tolist(), intrinsics=K)
            rows.append(row)
    (root / "s2" / "v1.png").write_bytes(b"this is not a PNG")
    manifest = root / "views.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


@pytest.fixture(scope="module")
def enhance_job(tmp_path_factory):
    manifest = write_scenes(tmp_path_factory.mktemp("scenes"))
    config = EnhanceConfig.for_cpu(
        model=forge.sd1_tiny(),
        taesd=forge.taesd(),
        engine="sdcpp",
        working_size=64,
        lightning_steps=1,
        depth_model=None,
        use_controlnet=False,
    )
    return lambda out: gb.BatchJob(gb.read_manifest(manifest), out, enhance=config)


def test_scenes_spread_over_two_actors_match_the_loop_and_a_bad_view_is_reported(cluster, enhance_job, tmp_path):
    local = gb.run_batch(enhance_job(tmp_path / "local"))
    on_ray = gb.run_batch(enhance_job(tmp_path / "ray"), ray=gb.RayOptions(actors=2))
    for s in (local, on_ray):
        assert (s.total, s.done, s.failed) == (12, 11, 1)
        (bad,) = s.failures
        assert bad.id == "s2/v1" and "not a readable image" in bad.error
    a, b = outputs(tmp_path / "local"), outputs(tmp_path / "ray")
    assert len(a) == 11 and a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    view = a["s0/v0.png"]
    alpha = np.zeros((64, 96), np.uint8)
    alpha[12:52, 20:76] = 255
    assert view.shape == (64, 96, 4) and np.array_equal(view[:, :, 3], alpha)  # input size, alpha kept
    recs = {r["id"]: r for r in records(tmp_path / "ray")}
    by_scene: dict[str, set] = {}
    for r in recs.values():
        if r["status"] == "done":
            by_scene.setdefault(r["scene"], set()).add((r["worker"], r["seed"]))
    assert all(len(v) == 1 for v in by_scene.values()), by_scene  # one actor and one seed per scene
    assert len({w for v in by_scene.values() for w, _ in v}) == 2  # the scenes spread over both actors
    assert "depth_alignment" in recs["s0/v2"]["parameters"]  # posed scene: depth maps aligned together
    assert "depth_alignment" not in recs["s1/v2"]["parameters"]
