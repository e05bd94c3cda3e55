"""gouache.batch without Ray: manifests, scene folders, planning, the in-process loop,
resuming, per-item errors, the results manifest and the ``gouache batch`` command.

Generation runs the real engine on the forged tiny SD1 + TAESD at 64x64, 2 steps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gouache as g
import gouache.batch as gb
from gouache.batch._plan import plan_units
from gouache.batch._work import match_to_reference
from gouache.testing import forge

SETTINGS = {"width": 64, "height": 64, "steps": 2, "cfg_scale": 1.0}


@pytest.fixture(scope="module")
def spec():
    return gb.ModelSpec(forge.sd1_tiny(), taesd=forge.taesd(), engine="sdcpp", threads=2)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def stat_of(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


# --------------------------------------------------------------------------- manifests


def test_jsonl_and_csv_manifests_read_the_same_items(tmp_path):
    (tmp_path / "init.png").write_bytes(b"")
    write_jsonl(
        tmp_path / "m.jsonl",
        [
            {
                "id": "a",
                "prompt": "a cat",
                "steps": 3,
                "cfg_scale": 5,
                "init_image": "init.png",
                "loras": [["style.safetensors", 0.5]],
            },
            {"prompt": "a dog", "negative": "blurry", "seed": 7},
        ],
    )
    (tmp_path / "m.csv").write_text(
        "id,prompt,steps,cfg_scale,init_image,loras,negative_prompt,seed\n"
        "a,a cat,3,5,init.png,style.safetensors:0.5,,\n"
        ",a dog,,,,,blurry,7\n",
        encoding="utf-8",
    )
    from_jsonl = gb.read_manifest(tmp_path / "m.jsonl")
    from_csv = gb.read_manifest(tmp_path / "m.csv")
    assert from_jsonl == from_csv
    a, b = from_jsonl
    assert a == gb.GenerateItem(
        id="a",
        prompt="a cat",
        steps=3,
        cfg_scale=5.0,
        init_image=str(tmp_path / "init.png"),
        loras=(("style.safetensors", 0.5),),
    )
    assert b.id == "000002" and b.negative_prompt == "blurry" and b.seed == 7  # row number, alias "negative"


@pytest.mark.parametrize(
    "row, fragment",
    [
        ({"prompt": "x", "stepz": 3}, "unknown field 'stepz'.*allowed:.*steps"),
        ({"prompt": "x", "steps": "many"}, "field 'steps': must be an integer; got 'many'"),
        ({"prompt": "x", "cfg_scale": float("nan")}, "finite"),
        ({"negative_prompt": "x"}, "needs a 'prompt'"),
        ({"prompt": "x", "id": "../escape"}, "not a valid id"),
        ({"prompt": "x", "loras": 5}, "loras must be"),
    ],
)
def test_bad_manifest_rows_are_refused_naming_row_and_value(tmp_path, row, fragment):
    m = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "fine"}, row])
    with pytest.raises(g.InvalidInputError, match=fragment) as err:
        gb.read_manifest(m)
    assert "m.jsonl line 2" in str(err.value)


def test_manifest_file_errors(tmp_path):
    with pytest.raises(g.InvalidInputError, match="manifest not found"):
        gb.read_manifest(tmp_path / "none.jsonl")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(g.InvalidInputError, match="allowed: .jsonl, .ndjson, .csv"):
        gb.read_manifest(tmp_path / "m.txt")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{"prompt": \n')
    with pytest.raises(g.InvalidInputError, match="bad.jsonl line 2: not valid JSON"):
        gb.read_manifest(tmp_path / "bad.jsonl")


def test_duplicate_ids_are_refused_before_any_work(tmp_path):
    items = [gb.GenerateItem(id="x", prompt="a"), gb.GenerateItem(id="X", prompt="b")]
    with pytest.raises(g.InvalidInputError, match="id 'X' repeats item 1"):
        plan_units(items, tmp_path, fmt="png", seed=None, scene_seed=0)


def test_enhance_manifest_and_scene_folder(tmp_path):
    scene = tmp_path / "scenes" / "chair"
    (scene / "depth").mkdir(parents=True)
    (scene / "masks").mkdir()
    for v in ("v0", "v1"):
        Image.new("RGB", (8, 8)).save(scene / f"{v}.png")
    np.save(scene / "depth" / "v0.npy", np.ones((8, 8), np.float32))
    Image.new("L", (8, 8)).save(scene / "masks" / "v1.png")
    Image.new("RGB", (8, 8)).save(scene / "ref.png")
    pose = np.eye(4).tolist()
    (scene / "scene.json").write_text(
        json.dumps(
            {
                "prompt": "a chair",
                "seed": 5,
                "color_reference": "ref.png",
                "intrinsics": [[8, 0, 4], [0, 8, 4], [0, 0, 1]],
                "poses": {"v0": pose, "v1": pose},
            }
        )
    )
    items = gb.read_items(tmp_path / "scenes")
    assert [(i.scene, i.id) for i in items] == [("chair", "v0"), ("chair", "v1")]  # ref.png is not a view
    v0, v1 = items
    assert (
        v0.depth == str(scene / "depth" / "v0.npy") and v0.mask is None and v1.mask == str(scene / "masks" / "v1.png")
    )
    assert v0.pose == tuple(map(tuple, pose)) and v0.intrinsics[0] == (8.0, 0.0, 4.0)
    assert v0.seed == 5 and v0.prompt == "a chair" and v0.color_reference == str(scene / "ref.png")

    # the same as a CSV manifest (pose as 16 numbers), with the view's file name as id
    (tmp_path / "m.csv").write_text(
        "scene,view,depth_map,pose\nchair,scenes/chair/v0.png,scenes/chair/depth/v0.npy,"
        + " ".join(str(x) for r in pose for x in r)
        + "\n"
    )
    (row,) = gb.read_items(tmp_path / "m.csv")
    assert row.kind == "enhance" and row.id == "v0" and row.image == v0.image and row.depth == v0.depth
    assert row.pose == v0.pose


def test_scene_views_must_agree_on_the_scene_seed(tmp_path):
    items = [
        gb.EnhanceItem(id="a", image="a.png", scene="s", seed=1),
        gb.EnhanceItem(id="b", image="b.png", scene="s", seed=2),
    ]
    with pytest.raises(g.InvalidInputError, match="scene 's': its views disagree on 'seed'"):
        plan_units(items, tmp_path, fmt="png", seed=None, scene_seed=42)


def test_seeds_are_decided_once_and_stable(tmp_path):
    items = [gb.GenerateItem(id=f"i{k}", prompt="p") for k in range(3)] + [
        gb.GenerateItem(id="own", prompt="p", seed=9)
    ]
    first = [u.tasks[0].seed for u in plan_units(items, tmp_path, fmt="png", seed=None, scene_seed=0)]
    again = [u.tasks[0].seed for u in plan_units(items, tmp_path, fmt="png", seed=None, scene_seed=0)]
    assert first == again and len(set(first[:3])) == 3 and first[3] == 9  # derived from the id: same every run
    based = [u.tasks[0].seed for u in plan_units(items, tmp_path, fmt="png", seed=100, scene_seed=0)]
    assert based == [100, 101, 102, 9]
    views = [gb.EnhanceItem(id=v, image=f"{v}.png", scene=s) for s in ("s1", "s2") for v in ("a", "b")]
    units = plan_units(views, tmp_path, fmt="png", seed=None, scene_seed=42)
    assert [[t.key for t in u.tasks] for u in units] == [["s1/a", "s1/b"], ["s2/a", "s2/b"]]  # a scene is one unit
    assert {t.seed for u in units for t in u.tasks} == {42}
    assert units[0].tasks[1].output == str(tmp_path / "s1" / "b.png")


def test_job_checks(tmp_path, spec):
    items = [gb.GenerateItem(id="a", prompt="p")]
    with pytest.raises(g.InvalidInputError, match="needs model=ModelSpec"):
        gb.run_batch(gb.BatchJob(items, tmp_path))
    with pytest.raises(g.InvalidInputError, match="unknown generation default 'stepz'"):
        gb.run_batch(gb.BatchJob(items, tmp_path, model=spec, defaults={"stepz": 1}))
    with pytest.raises(g.InvalidInputError, match="ModelSpec.taesd file not found"):
        gb.run_batch(gb.BatchJob(items, tmp_path, model=gb.ModelSpec(forge.sd1_tiny(), taesd=tmp_path / "no")))
    with pytest.raises(g.InvalidInputError, match="actors must be an integer >= 1"):
        gb.run_batch(gb.BatchJob(items, tmp_path, model=spec), ray=gb.RayOptions(actors=0))
    with pytest.raises(g.InvalidInputError, match="all generation items or all enhancement items"):
        gb.run_batch(gb.BatchJob(items + [gb.EnhanceItem(id="v", image="v.png")], tmp_path, model=spec))
    assert not any(tmp_path.iterdir())  # nothing was written


# --------------------------------------------------------------------------- the in-process loop


def test_loop_writes_outputs_and_results_then_resumes_doing_nothing(tmp_path, spec):
    items = [gb.GenerateItem(id=f"cube/{k}", prompt=f"a red cube {k}", **SETTINGS) for k in range(2)]
    items.append(gb.GenerateItem(id="bad", prompt="x", init_image=str(tmp_path / "nope.png"), **SETTINGS))
    seen = []
    s = gb.run_batch(
        gb.BatchJob(items, tmp_path / "out", model=spec),
        progress=lambda r, n, total: seen.append((r.id, r.status, n, total)),
    )
    assert (s.total, s.done, s.skipped, s.failed) == (3, 2, 0, 1) and not s.ok
    assert [x[2:] for x in seen] == [(1, 3), (2, 3), (3, 3)]
    out = tmp_path / "out"
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["cube/0.png", "cube/1.png", "results.jsonl"]  # no temporaries, no lock left
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["cube/0", "cube/1", "bad"]
    assert records[2]["status"] == "failed" and "init_image: image file not found" in records[2]["error"]
    params = g.read_parameters(out / "cube" / "0.png")
    assert params["seed"] == records[0]["seed"] == records[0]["parameters"]["seed"]
    assert params["prompt"] == "a red cube 0" and params["steps"] == 2
    a = np.asarray(Image.open(out / "cube" / "0.png"))
    b = np.asarray(Image.open(out / "cube" / "1.png"))
    assert a.shape == (64, 64, 3) and np.abs(a.astype(int) - b).mean() > 1  # different prompts, different images

    before = {p: stat_of(p) for p in out.rglob("*.png")}
    s2 = gb.run_batch(gb.BatchJob(items[:2], out, model=spec))
    assert (s2.done, s2.skipped, s2.failed) == (0, 2, 0)
    assert {p: stat_of(p) for p in out.rglob("*.png")} == before  # nothing rewritten
    again = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert again == records  # same records, one line per item, the failed one kept


def test_incomplete_output_is_made_again_and_the_same_seed_gives_the_same_image(tmp_path, spec):
    items = [gb.GenerateItem(id="one", prompt="a blue sphere", **SETTINGS)]
    gb.run_batch(gb.BatchJob(items, tmp_path, model=spec))
    good = (tmp_path / "one.png").read_bytes()
    (tmp_path / "one.png").write_bytes(good[: len(good) // 2])  # cut short (not by gouache)
    s = gb.run_batch(gb.BatchJob(items, tmp_path, model=spec))
    assert (s.done, s.skipped) == (1, 0)
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "one.png")), np.asarray(Image.open(__import__("io").BytesIO(good)))
    )


def test_a_second_run_on_the_same_folder_is_refused_while_one_runs(tmp_path, spec):
    lock = tmp_path / ".gouache-batch.lock"
    lock.write_text(f"{__import__('socket').gethostname()} {os.getpid()}\n")  # this live process holds it
    with pytest.raises(g.InvalidInputError, match="another batch run"):
        gb.run_batch(gb.BatchJob([gb.GenerateItem(id="a", prompt="p", **SETTINGS)], tmp_path, model=spec))
    lock.write_text(f"{__import__('socket').gethostname()} 999999999\n")  # a dead process: taken over
    assert gb.run_batch(gb.BatchJob([gb.GenerateItem(id="a", prompt="p", **SETTINGS)], tmp_path, model=spec)).done == 1
    assert not lock.exists()


def test_colour_reference_matches_the_object_and_keeps_background_and_alpha():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 120, (32, 32, 3), dtype=np.uint8)
    alpha = np.zeros((32, 32), np.uint8)
    alpha[8:24, 8:24] = 255
    view = Image.fromarray(np.dstack([rgb, alpha]))
    ref_rgb = rng.integers(150, 256, (20, 20, 3), dtype=np.uint8).astype(np.float32) / 255
    out = np.asarray(match_to_reference(view, (ref_rgb, None), "lab_meanstd")).astype(int)
    assert np.array_equal(out[:, :, 3], alpha)
    bg = alpha == 0
    assert np.array_equal(out[bg][:, :3], rgb[bg])  # background untouched
    fg = alpha == 255
    assert abs(out[fg][:, :3].mean() - ref_rgb.mean() * 255) < 6 < abs(rgb[fg].mean() - ref_rgb.mean() * 255)


# --------------------------------------------------------------------------- the command


def test_cli_batch_json_summary_and_exit_codes(tmp_path, capsys, spec):
    from gouache.cli import main

    m = write_jsonl(
        tmp_path / "m.jsonl", [{"id": "a", "prompt": "a house"}, {"id": "b", "prompt": "a tree", "seed": 3}]
    )
    args = [
        "batch",
        str(m),
        "-o",
        str(tmp_path / "out"),
        "-m",
        str(spec.model),
        "--taesd",
        str(spec.taesd),
        "--engine",
        "sdcpp",
        "-W",
        "64",
        "-H",
        "64",
        "--steps",
        "2",
        "--cfg-scale",
        "1",
        "--json",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["total"], summary["done"], summary["failed"], summary["runner"]) == (2, 2, 0, "local")
    assert g.read_parameters(tmp_path / "out" / "b.png")["seed"] == 3
    assert main(args) == 0 and json.loads(capsys.readouterr().out)["skipped"] == 2

    write_jsonl(m, [{"id": "c", "prompt": "x", "mask": "m.png"}])
    assert main(args) == 1  # the item failed (mask without init image): reported, exit 1
    assert json.loads(capsys.readouterr().out)["failures"][0]["id"] == "c"
    write_jsonl(m, [{"id": "d", "prompt": "x", "colour": "red"}])
    assert main(args) == 2  # a bad manifest is a usage error
    assert "unknown field 'colour'" in capsys.readouterr().err
