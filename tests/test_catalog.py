"""find_models / resolve_lora on ComfyUI and AUTOMATIC1111 layouts; pull() recipes, cache and offline errors.

No test here may touch the network: an autouse fixture blocks sockets and points the
Hugging Face cache into tmp_path, and pull() runs with HF_HUB_OFFLINE=1 unless a test
replaces the hub calls with fakes.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
import time
from pathlib import Path

import pytest

from gouache._errors import GouacheError, InvalidInputError, MissingDependencyError
from gouache._modelfiles import catalog as _catalog
from gouache._modelfiles.catalog import (
    MODEL_EXTENSIONS,
    MODEL_RECIPES,
    RECIPES,
    DownloadError,
    ModelEntry,
    find_models,
    pull,
    pull_model,
    resolve_lora,
)


def touch(path: Path, size: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    return path


# -- find_models ---------------------------------------------------------------------------


@pytest.fixture
def comfy(tmp_path) -> Path:
    root = tmp_path / "ComfyUI"
    m = root / "models"
    touch(m / "checkpoints" / "sd15.safetensors", 11)
    touch(m / "checkpoints" / "xl" / "Juggernaut.SAFETENSORS", 3)
    touch(m / "diffusion_models" / "wan2.1.gguf")
    touch(m / "unet" / "flux1-schnell-Q4_0.gguf")
    touch(m / "vae" / "ae.safetensors")
    touch(m / "vae_approx" / "taesd_decoder.pth")
    touch(m / "loras" / "styles" / "ink.safetensors", 5)
    touch(m / "loras" / "detail.ckpt")
    touch(m / "loras" / "readme.txt")  # not a model
    touch(m / "loras" / ".hidden.safetensors")  # hidden
    touch(m / "loras" / ".trash" / "old.safetensors")  # hidden folder
    touch(m / "controlnet" / "control_v11p_sd15_canny.pth")
    touch(m / "upscale_models" / "RealESRGAN_x4plus.pth")
    touch(m / "text_encoders" / "t5xxl_fp16.safetensors")
    touch(m / "clip" / "clip_l.safetensors")
    touch(m / "embeddings" / "EasyNegative.pt")
    touch(m / "photomaker" / "photomaker-v1.bin")
    (m / "custom_nodes_stuff").mkdir()
    return root


COMFY_EXPECTED = [
    ("checkpoint", "sd15"),
    ("checkpoint", "xl/Juggernaut"),
    ("controlnet", "control_v11p_sd15_canny"),
    ("diffusion_model", "flux1-schnell-Q4_0"),
    ("diffusion_model", "wan2.1"),
    ("embedding", "EasyNegative"),
    ("lora", "detail"),
    ("lora", "styles/ink"),
    ("photomaker", "photomaker-v1"),
    ("taesd", "taesd_decoder"),
    ("text_encoder", "clip_l"),
    ("text_encoder", "t5xxl_fp16"),
    ("upscaler", "RealESRGAN_x4plus"),
    ("vae", "ae"),
]


def test_comfyui_layout(comfy):
    entries = find_models(comfy)
    assert [(e.kind, e.name) for e in entries] == COMFY_EXPECTED
    ink = next(e for e in entries if e.name == "styles/ink")
    assert ink.path == comfy / "models" / "loras" / "styles" / "ink.safetensors"
    assert ink.size_bytes == 5
    assert next(e for e in entries if e.name == "sd15").size_bytes == 11
    assert all(e.kind in _catalog.MODEL_KINDS for e in entries)


def test_comfyui_models_folder_gives_the_same(comfy):
    assert find_models(comfy / "models") == find_models(comfy)
    assert find_models(str(comfy)) == find_models(comfy)


@pytest.fixture
def webui(tmp_path) -> Path:
    root = tmp_path / "stable-diffusion-webui"
    m = root / "models"
    touch(m / "Stable-diffusion" / "v1-5-pruned-emaonly.ckpt")
    touch(m / "Stable-diffusion" / "SDXL" / "sd_xl_base_1.0.safetensors")
    touch(m / "Lora" / "chars" / "hero.safetensors")
    touch(m / "LyCORIS" / "loha_style.safetensors")
    touch(m / "VAE" / "vae-ft-mse-840000-ema-pruned.safetensors")
    touch(m / "VAE-approx" / "model.pt")
    touch(m / "ControlNet" / "control_sd15_depth.pth")
    touch(m / "ESRGAN" / "4x-UltraSharp.pth")
    touch(m / "RealESRGAN" / "RealESRGAN_x4plus_anime_6B.pth")
    touch(root / "embeddings" / "bad_prompt.pt")
    touch(root / "embeddings" / "notes.md")
    return root


WEBUI_EXPECTED = [
    ("checkpoint", "SDXL/sd_xl_base_1.0"),
    ("checkpoint", "v1-5-pruned-emaonly"),
    ("controlnet", "control_sd15_depth"),
    ("embedding", "bad_prompt"),
    ("lora", "chars/hero"),
    ("lora", "loha_style"),
    ("taesd", "model"),
    ("upscaler", "4x-UltraSharp"),
    ("upscaler", "RealESRGAN_x4plus_anime_6B"),
    ("vae", "vae-ft-mse-840000-ema-pruned"),
]


def test_automatic1111_layout(webui):
    assert [(e.kind, e.name) for e in find_models(webui)] == WEBUI_EXPECTED


def test_automatic1111_models_folder_includes_sibling_embeddings(webui):
    assert find_models(webui / "models") == find_models(webui)


def test_entries_are_frozen_and_sorted(comfy):
    entries = find_models(comfy)
    assert entries == sorted(entries, key=lambda e: (e.kind, e.name))
    with pytest.raises(dataclasses.FrozenInstanceError):
        entries[0].name = "x"  # type: ignore[misc]
    assert isinstance(entries[0], ModelEntry)


def test_symlinked_folder_listed_once(tmp_path):
    m = tmp_path / "models"
    touch(m / "loras" / "a" / "one.safetensors")
    (m / "loras" / "b").symlink_to(m / "loras" / "a", target_is_directory=True)
    (m / "loras" / "loop").symlink_to(m / "loras", target_is_directory=True)  # a cycle
    external = touch(tmp_path / "elsewhere" / "two.safetensors")
    (m / "loras" / "two.safetensors").symlink_to(external)
    names = [e.name for e in find_models(tmp_path)]
    assert names == ["a/one", "two"]


def test_empty_known_folder_is_fine(tmp_path):
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    assert find_models(tmp_path) == []


@pytest.mark.parametrize("make", ["missing", "file", "unrelated"])
def test_unknown_root(tmp_path, make):
    root = tmp_path / "root"
    if make == "file":
        root.write_text("x")
    elif make == "unrelated":
        touch(root / "src" / "model.safetensors")
        (root / "models").mkdir()  # a models/ folder without known subfolders
    with pytest.raises(InvalidInputError, match=str(root).replace("\\", "\\\\")):
        find_models(root)


def test_unknown_root_lists_expected_folders(tmp_path):
    with pytest.raises(InvalidInputError, match=r"checkpoints.*loras|Lora.*loras"):
        find_models(tmp_path)


# -- resolve_lora ---------------------------------------------------------------------------


@pytest.fixture
def loras(tmp_path) -> Path:
    d = tmp_path / "loras"
    touch(d / "styles" / "Ink.safetensors")
    touch(d / "detail.ckpt")
    touch(d / "detail.safetensors")  # preferred over .ckpt
    touch(d / "a" / "dup.safetensors")
    touch(d / "b" / "dup.safetensors")
    touch(d / "lcm.v2.safetensors")
    touch(d / "only_pt.pt")
    return d


@pytest.mark.parametrize(
    "name, expected",
    [
        ("styles/Ink", "styles/Ink.safetensors"),
        ("styles/Ink.safetensors", "styles/Ink.safetensors"),
        ("styles\\Ink", "styles/Ink.safetensors"),
        ("STYLES/ink", "styles/Ink.safetensors"),  # case-insensitive relative path
        ("ink", "styles/Ink.safetensors"),  # unique base name
        ("Ink", "styles/Ink.safetensors"),
        ("detail", "detail.safetensors"),
        ("detail.ckpt", "detail.safetensors"),  # the name, not the extension, selects
        ("a/dup", "a/dup.safetensors"),
        ("lcm.v2", "lcm.v2.safetensors"),
        ("only_pt", "only_pt.pt"),
        (" ink ", "styles/Ink.safetensors"),
    ],
)
def test_resolve_lora(loras, name, expected):
    assert resolve_lora(name, loras) == loras / expected


def test_resolve_lora_ambiguous(loras):
    with pytest.raises(InvalidInputError, match=r"ambiguous.*a/dup, b/dup"):
        resolve_lora("dup", loras)


def test_resolve_lora_missing_lists_close_candidates(loras):
    with pytest.raises(InvalidInputError, match=r"no LoRA named 'inc'.*closest: styles/Ink"):
        resolve_lora("inc", loras)
    with pytest.raises(InvalidInputError, match=r"no LoRA named 'zzzzzz'") as info:
        resolve_lora("zzzzzz", loras)
    assert "closest" not in str(info.value)


def test_resolve_lora_empty_dir(tmp_path):
    with pytest.raises(InvalidInputError, match="holds no LoRA files"):
        resolve_lora("x", tmp_path)


@pytest.mark.parametrize("name", ["../secret", "styles/../../x", "/etc/passwd", "C:/x", "", "  ", None, 3])
def test_resolve_lora_refuses_bad_names(loras, name):
    (loras.parent / "secret.safetensors").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="LoRA name"):
        resolve_lora(name, loras)


def test_resolve_lora_bad_dir(tmp_path):
    with pytest.raises(InvalidInputError, match="not a directory"):
        resolve_lora("x", tmp_path / "nope")


# -- pull -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Fail any connection attempt at once, and keep the hub's files inside tmp_path."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def hub():
    import huggingface_hub  # in the test extra

    return huggingface_hub


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fill_cache(cache: Path, repo: str, files: dict[str, bytes], commit: str = COMMIT) -> Path:
    """The hub cache layout: models--owner--name/{refs/main, snapshots/<commit>/<file>}."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    touch(repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    for name, data in files.items():
        touch(snapshot / name).write_bytes(data)
    return snapshot


def test_recipes_are_repo_and_file():
    assert RECIPES["sd15"] == ("stable-diffusion-v1-5/stable-diffusion-v1-5", "v1-5-pruned-emaonly.safetensors")
    assert RECIPES["taesd"] == ("madebyollin/taesd", "diffusion_pytorch_model.safetensors")
    for name in ("sd15", "sd-turbo", "sdxl-turbo", "taesd", "realesrgan-x4"):
        assert name in RECIPES
    for name, (repo, filename) in RECIPES.items():
        owner, _, repo_name = repo.partition("/")
        assert owner and repo_name and "/" not in repo_name, name
        assert filename.lower().endswith(MODEL_EXTENSIONS), name


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_resolves_offline_from_cache(hub, tmp_path, recipe):
    repo, filename = RECIPES[recipe]
    cache = tmp_path / "cache"
    snapshot = fill_cache(cache, repo, {filename: recipe.encode()})
    got = pull(recipe, cache_dir=cache)
    assert got == snapshot / filename and got.read_bytes() == recipe.encode()


def test_offline_not_cached_raises_download_error_fast(hub, tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        pull("sd15")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "\n" not in message
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert "v1-5-pruned-emaonly.safetensors" in message
    assert "offline" in message and "HF_HUB_OFFLINE" in message
    assert str(tmp_path / "hf_home" / "hub") in message  # the cache it looked in, from HF_HOME
    assert isinstance(info.value, GouacheError)


def test_offline_cached_file_from_hf_home(hub, tmp_path):
    cache = tmp_path / "hf_home" / "hub"
    snapshot = fill_cache(cache, "madebyollin/taesd", {"diffusion_pytorch_model.safetensors": b"weights"})
    got = pull("madebyollin/taesd", "diffusion_pytorch_model.safetensors")
    assert got == snapshot / "diffusion_pytorch_model.safetensors"
    # the same answer huggingface_hub's own cache lookup gives
    assert (
        Path(hub.try_to_load_from_cache("madebyollin/taesd", "diffusion_pytorch_model.safetensors", cache_dir=cache))
        == got
    )


def test_hf_hub_cache_env_wins(hub, tmp_path, monkeypatch):
    cache = tmp_path / "elsewhere"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    snapshot = fill_cache(cache, "o/r", {"m.gguf": b"g"})
    assert pull("o/r", "m.gguf") == snapshot / "m.gguf"


def test_offline_revision_by_commit(hub, tmp_path):
    cache = tmp_path / "c"
    other = "f" * 40
    fill_cache(cache, "o/r", {"m.safetensors": b"main"})
    repo_dir = cache / "models--o--r"
    touch(repo_dir / "snapshots" / other / "m.safetensors").write_bytes(b"old")
    assert pull("o/r", "m.safetensors", cache_dir=cache).read_bytes() == b"main"
    assert pull("o/r", "m.safetensors", cache_dir=cache, revision=other).read_bytes() == b"old"


def test_offline_filename_none_uses_cached_listing(hub, tmp_path):
    cache = tmp_path / "c"
    snapshot = fill_cache(
        cache, "o/r", {"README.md": b"", "model.safetensors": b"w", "unet/diffusion_pytorch_model.safetensors": b"u"}
    )
    assert pull("o/r", cache_dir=cache) == snapshot / "model.safetensors"


def test_offline_filename_none_not_cached(hub, tmp_path):
    with pytest.raises(DownloadError, match=r"cannot list the files of o/r: this machine is offline"):
        pull("o/r", cache_dir=tmp_path / "c")


def test_recipe_file_override(hub, tmp_path):
    repo = RECIPES["sdxl-turbo"][0]
    snapshot = fill_cache(tmp_path / "c", repo, {"sd_xl_turbo_1.0.safetensors": b"fp32"})
    assert (
        pull("sdxl-turbo", "sd_xl_turbo_1.0.safetensors", cache_dir=tmp_path / "c")
        == snapshot / "sd_xl_turbo_1.0.safetensors"
    )


@pytest.mark.parametrize(
    "repo_id, pattern",
    [
        ("sd16", r"unknown recipe 'sd16' \(did you mean sd15"),
        ("", "repo_id"),
        (None, "repo_id"),
    ],
)
def test_bad_repo_ids(repo_id, pattern):
    with pytest.raises(InvalidInputError, match=pattern):
        pull(repo_id)


def test_bad_filename(hub):
    with pytest.raises(InvalidInputError, match="filename"):
        pull("o/r", "")


def test_missing_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "gouache\[hub\]"') as info:
        pull("sd15")
    assert isinstance(info.value, ImportError)


# Online paths, with the hub calls replaced by fakes (no machine here reaches a hub).


@pytest.fixture
def online(hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)


def test_online_filename_none_lists_repo(hub, online, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(
        hub.HfApi,
        "list_repo_files",
        lambda self, repo, **kw: [
            ".gitattributes",
            "README.md",
            "sd_turbo.safetensors",
            "unet/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.safetensors",
        ],
    )

    def fake_download(repo, filename, **kw):
        calls.append((repo, filename, kw["local_files_only"]))
        return str(tmp_path / filename)

    monkeypatch.setattr(hub, "hf_hub_download", fake_download)
    assert pull("stabilityai/sd-turbo") == tmp_path / "sd_turbo.safetensors"
    assert calls == [("stabilityai/sd-turbo", "sd_turbo.safetensors", False)]


def test_online_several_weight_files(hub, online, monkeypatch):
    monkeypatch.setattr(
        hub.HfApi, "list_repo_files", lambda self, repo, **kw: ["a.safetensors", "b.gguf", "c/d.safetensors", "x.json"]
    )
    with pytest.raises(InvalidInputError, match=r"several weight files.*a\.safetensors, b\.gguf"):
        pull("o/r")


def test_online_no_weight_file(hub, online, monkeypatch):
    monkeypatch.setattr(hub.HfApi, "list_repo_files", lambda self, repo, **kw: ["README.md"])
    with pytest.raises(InvalidInputError, match="no weight file"):
        pull("o/r")


def named_error(name: str) -> type[Exception]:
    return type(name, (Exception,), {})


@pytest.mark.parametrize(
    "error, pattern",
    [
        (named_error("LocalEntryNotFoundError"), r"could not be reached.*HF_HUB_OFFLINE=1"),
        (ConnectionError, r"could not be reached \(ConnectionError\)"),
        (named_error("RepositoryNotFoundError"), r"repository o/r not found"),
        (named_error("GatedRepoError"), r"o/r is gated.*token="),
        (named_error("RemoteEntryNotFoundError"), r"file 'm\.safetensors' not found in o/r"),
        (named_error("RevisionNotFoundError"), r"revision 'v9' not found in o/r"),
    ],
)
def test_online_errors_become_download_errors(hub, online, monkeypatch, error, pattern):
    def fail(*args, **kwargs):
        raise error("boom")

    monkeypatch.setattr(hub, "hf_hub_download", fail)
    with pytest.raises(DownloadError, match=pattern) as info:
        pull("o/r", "m.safetensors", revision="v9")
    assert "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, error)


def test_online_listing_error(hub, online, monkeypatch):
    def fail(self, repo, **kw):
        raise ConnectionError("no route")

    monkeypatch.setattr(hub.HfApi, "list_repo_files", fail)
    with pytest.raises(DownloadError, match=r"cannot get o/r: the Hugging Face Hub could not be reached"):
        pull("o/r")


def test_invalid_repo_id_is_input_error(hub, online, monkeypatch):
    def fail(*args, **kwargs):
        raise named_error("HFValidationError")("Repo id must use alphanumeric chars")

    monkeypatch.setattr(hub, "hf_hub_download", fail)
    with pytest.raises(InvalidInputError, match="invalid Hugging Face repo id"):
        pull("o/r r", "m.safetensors")


def test_real_hub_offline_error_is_mapped(hub, tmp_path):
    """huggingface_hub's own offline failure (local_files_only) becomes the offline DownloadError."""
    with pytest.raises(DownloadError, match=r"m\.safetensors from o/r: this machine is offline") as info:
        pull("o/r", "m.safetensors", cache_dir=tmp_path / "empty")
    assert type(info.value.__cause__).__name__ == "LocalEntryNotFoundError"


# -- models in parts ------------------------------------------------------------------------


def test_model_recipes_name_sdmodel_keywords_and_known_parts():
    import inspect as _inspect

    from gouache import SDModel

    keywords = set(_inspect.signature(SDModel).parameters)
    for name in ("z-image-turbo", "qwen-image", "qwen-image-edit", "chroma", "flux-kontext", "flux2-klein-4b"):
        assert name in MODEL_RECIPES
    for name, parts in MODEL_RECIPES.items():
        assert "diffusion_model" in parts, name
        for keyword, recipe in parts.items():
            assert keyword in keywords, (name, keyword)
            assert recipe in RECIPES, (name, recipe)


def test_pull_model_offline_from_cache_gives_sdmodel_keywords(hub, tmp_path):
    cache = tmp_path / "cache"
    expected = {}
    for keyword, recipe in MODEL_RECIPES["z-image-turbo"].items():
        repo, filename = RECIPES[recipe]
        expected[keyword] = fill_cache(cache, repo, {filename: recipe.encode()}) / filename
    got = pull_model("z-image-turbo", cache_dir=cache)
    assert got == expected
    assert {k: v.read_bytes() for k, v in got.items()} == {
        k: r.encode() for k, r in MODEL_RECIPES["z-image-turbo"].items()
    }


def test_pull_model_missing_part_raises_download_error(hub, tmp_path):
    cache = tmp_path / "cache"
    repo, filename = RECIPES["flux-ae"]
    fill_cache(cache, repo, {filename: b"vae"})  # the VAE is cached, the diffusion model is not
    with pytest.raises(DownloadError):
        pull_model("chroma", cache_dir=cache)


def test_pull_model_unknown_name_lists_models():
    with pytest.raises(InvalidInputError, match=r"unknown model recipe 'z-image-trubo' \(did you mean z-image-turbo"):
        pull_model("z-image-trubo")
