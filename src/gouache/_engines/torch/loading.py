"""Loading single-file checkpoints into diffusers pipelines, offline and tensor by tensor."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

from ..._errors import InvalidInputError
from ..._hardware import physical_cores
from ..._modelfiles.folders import is_diffusers_folder
from ..._modelfiles.headers import safetensors_header, sniff
from ..._modelfiles.inspect import inspect
from ..requests import EngineOptions, ModelFiles, ProgressFn
from .configs import config_dir
from .distilled import compact_tiny_unet, config_of, is_tiny_unet, tiny_autoencoder
from .runtime import choose_precision, dtype_of, import_torch

log = logging.getLogger("gouache.torch")

#: Families this engine loads (family value of gouache.inspect -> its config folder).
SUPPORTED: MappingProxyType[str, str] = MappingProxyType(
    {
        "sd1": "sd1",
        "sd1_inpaint": "sd1_inpaint",
        "sd1_tiny": "sd1_tiny",
        "sd2": "sd2",
        "sd2_tiny": "sd2_tiny",
        "sdxl": "sdxl",
        "sdxl_distilled": "ssd1b",
        "sdxl_inpaint": "sdxl_inpaint",
    }
)
#: Sub-models whose config folder differs from their family's ((family, variant) -> folder).
VARIANT_CONFIGS: MappingProxyType[tuple[str, str], str] = MappingProxyType(
    {
        ("sd1_tiny", "sdxs_512_ds"): "sdxs",
        ("sd2", "768-v"): "sd2_v",
        ("sd2_tiny", "sdxs_09"): "sdxs09",
        ("sdxl_distilled", "vega"): "vega",
    }
)
#: Families whose UNet lacks the middle block: diffusers' ControlNets do not fit them.
_DISTILLED = frozenset({"sd1_tiny", "sd2_tiny", "sdxl_distilled"})
#: Part files the torch engine never takes (its checkpoints hold their own text encoders).
_PART_FILES = ("clip_l", "clip_g", "t5xxl", "photo_maker", "high_noise_diffusion_model")


@dataclasses.dataclass
class Loaded:
    """A model loaded for the torch engine: the base pipeline, its ControlNet, where it runs."""

    pipe: Any
    family: str
    device: str
    dtype: str
    controlnet: Any = None


def _tiny_vae(path: Path, dtype):
    """The TAESD / TAESDXL file ``taesd=`` names, as diffusers' ``AutoencoderTiny``."""
    return tiny_autoencoder(read_checkpoint(path, dtype), dtype, f"TAESD file {str(path)!r}")


def read_checkpoint(path: Path, dtype) -> dict[str, Any]:
    """The checkpoint's tensors, each cast to ``dtype`` as it is read.

    diffusers' ``from_single_file`` holds the whole file in its stored precision while it
    builds the bf16 model, so peak memory is file + model.  Reading tensor by tensor and
    casting at once keeps the peak at about the model's size; the models built from this
    dict share its storage (no second copy)."""
    torch = import_torch()

    def cast(t):
        return t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t

    if sniff(path) == "safetensors":
        return {name: cast(t) for name, t in _read_safetensors(path)}
    state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k: cast(v) for k, v in state.items() if hasattr(v, "is_floating_point")}


_ST_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def _read_safetensors(path: Path):
    """``(name, tensor)`` pairs read with plain file reads, one tensor at a time.

    Not mmap: pages of a mapped file count in the process's RSS until it is unmapped, so a
    mapped read costs file size + cast copies at the peak; ``readinto`` costs one tensor."""

    torch = import_torch()
    header, base = safetensors_header(path)
    header.pop("__metadata__", None)
    with open(path, "rb") as f:
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            dtype = getattr(torch, _ST_DTYPES.get(info["dtype"], ""), None)
            if dtype is None:
                raise InvalidInputError(
                    f"{str(path)!r}: tensor {name!r} has dtype {info['dtype']}, which the torch engine"
                    f" does not read (allowed: {', '.join(_ST_DTYPES)})"
                )
            start, end = info["data_offsets"]
            shape = tuple(info["shape"])
            if end == start:
                yield name, torch.empty(shape, dtype=dtype)
                continue
            buf = bytearray(end - start)
            f.seek(base + start)
            if f.readinto(buf) != len(buf):
                raise InvalidInputError(f"{str(path)!r} is truncated (tensor {name!r} runs past the end of the file)")
            yield name, torch.frombuffer(buf, dtype=dtype).reshape(shape)


def _load_pipeline(pipe_cls, path: Path, cfg: Path, dtype):
    """``pipe_cls`` built from a single-file checkpoint, component by component, offline.

    The same conversions as ``pipe_cls.from_single_file`` (diffusers' ldm -> diffusers name
    mapping for each component), fed from :func:`read_checkpoint` so the file is never held
    in memory beside the model."""
    import json

    import diffusers as D
    import transformers
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

    index = json.loads((cfg / "model_index.json").read_text())
    ckpt = read_checkpoint(path, dtype)
    if is_tiny_unet(config_of(cfg, "unet")):
        ckpt = compact_tiny_unet(ckpt)
    parts: dict[str, Any] = {}
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list):
            continue
        lib, cls_name = spec
        if cls_name is None:
            parts[name] = None
            continue
        cls = getattr(D if lib == "diffusers" else transformers, cls_name)
        if cls_name == "AutoencoderTiny":  # SDXS: the checkpoint's own TAESD
            parts[name] = tiny_autoencoder(ckpt, dtype, f"{str(path)!r}", config_of(cfg, name))
        elif name in ("unet", "vae"):
            parts[name] = cls.from_single_file(
                ckpt, config=str(cfg), subfolder=name, local_files_only=True, torch_dtype=dtype
            )
        elif name.startswith("text_encoder"):
            parts[name] = create_diffusers_clip_model_from_ldm(
                cls, ckpt, subfolder=name, config=str(cfg), torch_dtype=dtype, local_files_only=True
            )
        else:  # tokenizers and the scheduler: small files in the config folder
            parts[name] = cls.from_pretrained(str(cfg), subfolder=name, local_files_only=True)
    del ckpt
    if "requires_safety_checker" in index:
        parts["requires_safety_checker"] = False
    return pipe_cls(**parts)


def _load_controlnet(path: Path, cfg: Path, dtype):
    """A ControlNet from an ldm-layout single file or a diffusers-layout file (as published),
    read with :func:`read_checkpoint` (cast as read, no second copy)."""
    import json

    import diffusers as D

    state = read_checkpoint(path, dtype)
    if any(k.startswith("controlnet_cond_embedding.") for k in state):
        from accelerate import init_empty_weights  # weights come from the checkpoint: allocate none

        with init_empty_weights():
            model = D.ControlNetModel.from_config(json.loads((cfg / "controlnet" / "config.json").read_text()))
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if missing or unexpected:
            raise InvalidInputError(
                f"ControlNet {str(path)!r} does not match this model family's ControlNet"
                f" (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
            )
        return model.to(dtype)
    return D.ControlNetModel.from_single_file(
        state, config=str(cfg), subfolder="controlnet", local_files_only=True, torch_dtype=dtype
    )


def config_family(files: ModelFiles) -> str:
    """The config folder for ``files``, or :class:`~gouache.InvalidInputError` saying why the
    torch engine cannot load them."""
    if files.model is None:
        raise InvalidInputError(
            "the torch engine loads single-file checkpoints: pass model=, or use engine='sdcpp'"
            " for models shipped as parts (diffusion_model=...)"
        )
    if not is_diffusers_folder(files.model) and sniff(files.model) == "gguf":
        raise InvalidInputError("the torch engine does not load GGUF files; use engine='sdcpp'")
    for name in _PART_FILES:
        if getattr(files, name) is not None:
            raise InvalidInputError(
                f"the torch engine does not take {name}= (the checkpoint holds its text encoders); use engine='sdcpp'"
            )
    info = inspect(files.model)
    family = info.family.value
    if family not in SUPPORTED:
        raise InvalidInputError(
            f"the torch engine does not support {family} models; supported: {', '.join(SUPPORTED)} (use engine='sdcpp')"
        )
    if family in _DISTILLED and files.control_net is not None:
        raise InvalidInputError(
            f"ControlNet needs a UNet with its middle block; this {family} model ({info.variant}) has none"
        )
    return VARIANT_CONFIGS.get((family, info.variant or ""), SUPPORTED[family])


def _load_folder(pipe_cls, folder: Path, dtype):
    """``pipe_cls`` from a diffusers folder (``model_index.json`` + subfolders), offline."""
    kwargs: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": True}
    if (folder / "safety_checker").is_dir():
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    return pipe_cls.from_pretrained(str(folder), **kwargs)


def _clip_skip_compat(pipe) -> None:
    """diffusers (0.42) applies clip_skip through ``text_encoder.text_model.final_layer_norm``;
    transformers 5 flattened CLIPTextModel (``final_layer_norm`` sits on the model itself), so
    clip_skip > 1 fails with an AttributeError.  Give such encoders the attribute path diffusers
    reads (a plain namespace: not a registered submodule, so weights and state dicts are unchanged)."""
    for name in ("text_encoder", "text_encoder_2"):
        encoder = getattr(pipe, name, None)
        if encoder is not None and not hasattr(encoder, "text_model") and hasattr(encoder, "final_layer_norm"):
            object.__setattr__(encoder, "text_model", SimpleNamespace(final_layer_norm=encoder.final_layer_norm))


def _tune(loaded: Loaded, options: EngineOptions) -> None:
    """Move to the device; channels_last on CPU; VAE tiling and torch.compile when asked."""
    torch = import_torch()
    pipe, controlnet = loaded.pipe, loaded.controlnet
    pipe.set_progress_bar_config(disable=True)
    _clip_skip_compat(pipe)
    pipe.to(loaded.device)
    if controlnet is not None:
        controlnet.to(loaded.device)
    if loaded.device == "cpu" or options.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        if controlnet is not None:
            controlnet.to(memory_format=torch.channels_last)
    if options.vae_tiling and hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()
    if options.compile:
        pipe.unet = torch.compile(pipe.unet)


def load(files: ModelFiles, options: EngineOptions, threads: int | None, on_load_progress: ProgressFn | None) -> Loaded:
    """Load ``files`` offline (every read is local_files_only: nothing is fetched from a hub)."""
    torch = import_torch()
    import diffusers as D

    cfg_family = config_family(files)
    family = inspect(files.model).family.value
    torch.set_num_threads(threads or physical_cores())
    precision = choose_precision(options.precision, options.device)
    dtype = dtype_of(precision.dtype)
    log.info(
        "torch engine: %s, %s (%s), %d threads",
        precision.device,
        precision.dtype,
        precision.reason,
        torch.get_num_threads(),
    )
    cfg = config_dir(cfg_family)
    pipe_cls = D.StableDiffusionXLPipeline if family.startswith("sdxl") else D.StableDiffusionPipeline
    t0 = time.perf_counter()

    def progress(step: int) -> None:
        if on_load_progress:
            on_load_progress(step, 3, time.perf_counter() - t0)

    progress(0)
    if is_diffusers_folder(files.model):
        pipe = _load_folder(pipe_cls, files.model, dtype)
    else:
        pipe = _load_pipeline(pipe_cls, files.model, cfg, dtype)
    progress(1)
    if files.vae is not None:
        pipe.vae = D.AutoencoderKL.from_single_file(
            str(files.vae), config=str(cfg), subfolder="vae", local_files_only=True, torch_dtype=dtype
        )
    if files.taesd is not None:
        pipe.vae = _tiny_vae(files.taesd, dtype)
    controlnet = None if files.control_net is None else _load_controlnet(files.control_net, cfg, dtype)
    progress(2)
    loaded = Loaded(pipe, family, precision.device, precision.dtype, controlnet)
    _tune(loaded, options)
    progress(3)
    return loaded
