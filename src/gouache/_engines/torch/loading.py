"""Loading single-file checkpoints into diffusers pipelines, offline and tensor by tensor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._errors import InvalidInputError
from .runtime import _torch


def _tiny_vae(path: Path, dtype):
    from diffusers import AutoencoderTiny
    from safetensors.torch import load_file

    vae = AutoencoderTiny(latent_channels=4)
    state = load_file(str(path))
    missing, unexpected = vae.load_state_dict(state, strict=False)
    if missing:
        raise InvalidInputError(f"TAESD file {str(path)!r} does not match diffusers' AutoencoderTiny (missing {missing[:3]})")
    return vae.to(dtype)


def read_checkpoint(path: Path, dtype) -> dict[str, Any]:
    """The checkpoint's tensors, each cast to ``dtype`` as it is read.

    diffusers' ``from_single_file`` holds the whole file in its stored precision while it
    builds the bf16 model, so peak memory is file + model.  Reading tensor by tensor and
    casting at once keeps the peak at about the model's size; the models built from this
    dict share its storage (no second copy)."""
    torch = _torch()

    def cast(t):
        return t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t

    from ..._modelfiles.headers import sniff

    if sniff(path) == "safetensors":
        return {name: cast(t) for name, t in _read_safetensors(path)}
    state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k: cast(v) for k, v in state.items() if hasattr(v, "is_floating_point")}


_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def _read_safetensors(path: Path):
    """``(name, tensor)`` pairs read with plain file reads, one tensor at a time.

    Not mmap: pages of a mapped file count in the process's RSS until it is unmapped, so a
    mapped read costs file size + cast copies at the peak; ``readinto`` costs one tensor."""
    from ..._modelfiles.headers import safetensors_header

    torch = _torch()
    header, base = safetensors_header(path)
    header.pop("__metadata__", None)
    with open(path, "rb") as f:
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            dtype = getattr(torch, _ST_DTYPES.get(info["dtype"], ""), None)
            if dtype is None:
                raise InvalidInputError(f"{str(path)!r}: tensor {name!r} has dtype {info['dtype']}, which the torch engine"
                                        f" does not read (allowed: {', '.join(_ST_DTYPES)})")
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
    parts: dict[str, Any] = {}
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list):
            continue
        lib, cls_name = spec
        if cls_name is None:
            parts[name] = None
            continue
        cls = getattr(D if lib == "diffusers" else transformers, cls_name)
        if name in ("unet", "vae"):
            parts[name] = cls.from_single_file(ckpt, config=str(cfg), subfolder=name, local_files_only=True, torch_dtype=dtype)
        elif name.startswith("text_encoder"):
            parts[name] = create_diffusers_clip_model_from_ldm(cls, ckpt, subfolder=name, config=str(cfg),
                                                               torch_dtype=dtype, local_files_only=True)
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
            raise InvalidInputError(f"ControlNet {str(path)!r} does not match this model family's ControlNet"
                                    f" (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
        return model.to(dtype)
    return D.ControlNetModel.from_single_file(state, config=str(cfg), subfolder="controlnet",
                                              local_files_only=True, torch_dtype=dtype)
