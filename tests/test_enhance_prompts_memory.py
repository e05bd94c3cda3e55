"""gouache.enhance: prompt templates, and gouache.enhance.memory_utils (presets, report)."""

from __future__ import annotations

import io
import json

import pytest

from gouache import EngineOptions, InvalidInputError
from gouache.enhance import MemoryConfig, PromptBuilder, get_memory_status, print_memory_report
from gouache.enhance import memory_utils as memory

BUILTINS = ["anime_style", "character", "default", "environment", "object", "photorealistic", "product"]


# --------------------------------------------------------------------------- prompts


def test_builtin_templates_listed_and_all_build():
    assert PromptBuilder.templates() == BUILTINS
    for name in BUILTINS:
        builder = PromptBuilder(name)
        prompt, negative = builder.build("a red wooden chair")
        assert "a red wooden chair" in prompt and negative
        assert "{" not in prompt and ", ," not in prompt and not prompt.endswith(",")
        with_extra, _ = builder.build("a red wooden chair", extra="weathered paint")
        assert "weathered paint" in with_extra and with_extra != prompt


def test_extra_forms():
    b = PromptBuilder()
    assert b.build("a cube")[0].startswith("a cube, highly detailed")
    assert b.build("  a cube ", ["old", "rusty"])[0].startswith("a cube, old, rusty, highly detailed")
    assert b.build("a cube", "")[0] == b.build("a cube")[0]
    with pytest.raises(InvalidInputError, match="subject"):
        b.build("  ")
    with pytest.raises(InvalidInputError, match="extra"):
        b.build("a cube", extra=3)


@pytest.mark.parametrize("subject", ["a 1,5 litre bottle", "a red,white and blue flag", "an old , worn chair"])
def test_the_users_text_is_kept_as_written(subject):
    prompt, _ = PromptBuilder().build(subject)
    assert prompt.startswith(subject + ", highly detailed")
    assert (
        PromptBuilder("photorealistic")
        .build(subject, extra="3,5 mm grain")[0]
        .startswith(f"a photograph of {subject}, 3,5 mm grain, photorealistic")
    )


def test_unknown_template_lists_the_available_ones():
    with pytest.raises(
        InvalidInputError, match=r"unknown prompt template 'watercolour'; available: anime_style, .*product"
    ):
        PromptBuilder("watercolour")


def test_user_templates_from_json_and_toml(tmp_path):
    js = tmp_path / "t.json"
    js.write_text(
        json.dumps(
            {
                "clay": {"prompt": "{subject} in clay, {extra}", "negative": "photo"},
                "default": {"prompt": "just {subject}"},
            }
        )
    )
    b = PromptBuilder("clay", templates_file=js)
    assert b.build("a fox", "soft light") == ("a fox in clay, soft light", "photo")
    assert b.templates() == sorted([*BUILTINS, "clay"])
    assert PromptBuilder.templates() == BUILTINS  # the class lists only the built-ins
    assert PromptBuilder("default", templates_file=js).build("a fox", "x") == ("just a fox, x", "")

    toml = tmp_path / "t.toml"
    toml.write_text('[ink]\nprompt = "ink drawing of {subject}"\nnegative = "color"\n')
    assert PromptBuilder("ink", templates_file=toml).build("a boat") == ("ink drawing of a boat", "color")


@pytest.mark.parametrize(
    "content, suffix, match",
    [
        ('{"x": {"prompt": "no subject here"}}', ".json", r"'\{subject\}'"),
        ('{"x": {"prompt": "{subject}", "style": "y"}}', ".json", "got keys"),
        ('{"x": "plain string"}', ".json", "must be a table"),
        ('["x"]', ".json", "must map template names"),
        ("{not json", ".json", "cannot be parsed"),
        ("x = [", ".toml", "cannot be parsed"),
        ("x: 1", ".yaml", r"\.json or \.toml"),
    ],
)
def test_bad_templates_files(tmp_path, content, suffix, match):
    path = tmp_path / f"templates{suffix}"
    path.write_text(content)
    with pytest.raises(InvalidInputError, match=match):
        PromptBuilder(templates_file=path)


def test_missing_templates_file(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        PromptBuilder(templates_file=tmp_path / "none.json")


# --------------------------------------------------------------------------- memory presets


@pytest.mark.parametrize("name", ["t4_balanced", "t4_speed", "t4_minimal", "cpu", "none"])
def test_presets_map_onto_engine_options(name):
    cfg = MemoryConfig.from_preset(name)
    opts = cfg.to_engine_options(device="cpu")
    assert isinstance(opts, EngineOptions)
    for field in (
        "offload_to_cpu",
        "keep_vae_on_cpu",
        "keep_clip_on_cpu",
        "keep_control_net_on_cpu",
        "flash_attention",
        "vae_tiling",
    ):
        assert getattr(opts, field) == getattr(cfg, field)
    assert opts.device == "cpu" and opts.precision == "auto"  # the CPU picks its own precision
    assert cfg.to_engine_options(mmap=True, rng="cpu").mmap is True
    cuda = cfg.to_engine_options(device="cuda:1")
    assert cuda.device == "cuda:1"
    assert cuda.precision == {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", None: "auto"}[cfg.torch_dtype]


def test_auto_preset_follows_the_device(monkeypatch):
    monkeypatch.setattr(memory, "choose_preset", lambda *a, **k: "t4_balanced")
    assert MemoryConfig.from_preset("auto", device="cpu") == MemoryConfig.from_preset("cpu")
    assert MemoryConfig.from_preset("auto", device="cuda") == MemoryConfig.from_preset("t4_balanced")


def test_preset_contents_are_sensible():
    speed, balanced, minimal, cpu, none = (
        MemoryConfig.from_preset(n) for n in ("t4_speed", "t4_balanced", "t4_minimal", "cpu", "none")
    )
    assert not speed.offload_to_cpu and not speed.vae_tiling
    assert minimal.offload_to_cpu and minimal.vae_tiling and minimal.weight_type == "q8_0"
    assert balanced.vae_tiling and balanced.torch_dtype == "float16"  # T4: no bfloat16
    assert cpu.torch_dtype is None and not cpu.offload_to_cpu  # the CPU's best precision (bf16 where it has it)
    assert none == MemoryConfig()


def test_memory_config_validation():
    with pytest.raises(InvalidInputError, match="unknown memory preset 'a100'; available: .*auto"):
        MemoryConfig.from_preset("a100")
    with pytest.raises(InvalidInputError, match="weight_type"):
        MemoryConfig(weight_type="int3")
    with pytest.raises(InvalidInputError, match="torch_dtype"):
        MemoryConfig(torch_dtype="float8")
    with pytest.raises(InvalidInputError, match="vae_tiling must be True or False"):
        MemoryConfig(vae_tiling="yes")
    with pytest.raises(InvalidInputError, match="unknown EngineOptions fields"):
        MemoryConfig().to_engine_options(turbo=True)
    assert MemoryConfig(weight_type="q4_k").weight_type == "q4_k"


GIB = 1024**3


@pytest.mark.parametrize(
    "gpu, ram, want",
    [
        (None, 64 * GIB, "cpu"),
        (0, None, "cpu"),
        (15 * GIB, 12 * GIB, "t4_balanced"),
        (15 * GIB, 4 * GIB, "t4_minimal"),
        (24 * GIB, 4 * GIB, "t4_speed"),
        (8 * GIB, 64 * GIB, "t4_minimal"),
    ],
)
def test_choose_preset_rules(gpu, ram, want):
    assert memory.choose_preset(gpu, ram, detect=False) == want


def test_auto_without_torch_or_nvidia_smi_is_cpu(monkeypatch):
    monkeypatch.setattr(memory, "_import_torch", lambda: None)
    monkeypatch.setattr(memory.shutil, "which", lambda name: None)
    assert MemoryConfig.from_preset("auto") == MemoryConfig.from_preset("cpu")


def test_auto_uses_torch_cuda_when_importable(monkeypatch):
    class FakeCuda:
        @staticmethod
        def is_available():
            return True

        @staticmethod
        def device_count():
            return 1

        @staticmethod
        def mem_get_info(index):
            return (14 * GIB, 15 * GIB)

        @staticmethod
        def get_device_name(index):
            return "Tesla T4"

    class FakeTorch:
        cuda = FakeCuda

    monkeypatch.setattr(memory, "_import_torch", lambda: FakeTorch)
    monkeypatch.setattr(
        memory,
        "_ram_status",
        lambda: {
            "ram_total_bytes": 13 * GIB,
            "ram_available_bytes": 11 * GIB,
            "process_rss_bytes": GIB,
            "source": "procfs",
        },
    )
    assert MemoryConfig.from_preset("auto") == MemoryConfig.from_preset("t4_balanced")
    status = get_memory_status()
    assert status["gpus"] == [{"index": 0, "name": "Tesla T4", "total_bytes": 15 * GIB, "free_bytes": 14 * GIB}]
    out = io.StringIO()
    print_memory_report(out)
    assert "GPU 0 Tesla T4: 14.00 GiB free of 15.00 GiB" in out.getvalue()


def test_nvidia_smi_lines_are_parsed():
    assert memory._smi_line("0, Tesla T4, 15360, 15000") == {
        "index": 0,
        "name": "Tesla T4",
        "total_bytes": 15360 * 1024**2,
        "free_bytes": 15000 * 1024**2,
    }
    assert memory._smi_line("garbage") is None


def test_memory_status_and_report(capsys):
    status = get_memory_status()
    assert set(status) == {"ram_total_bytes", "ram_available_bytes", "process_rss_bytes", "source", "gpus"}
    if status["source"] is not None:
        assert status["ram_total_bytes"] >= status["ram_available_bytes"] > 0
        assert status["process_rss_bytes"] > 0
    print_memory_report()
    text = capsys.readouterr().out
    assert "RAM total" in text and "process RSS" in text and "attention" in text
