"""``assemble_checkpoint``: one single-file checkpoint from a base checkpoint and a UNet-only file."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .._errors import InvalidInputError
from .._files import check_writable
from .convert import _UNET_PREFIX, unet_name_to_ldm
from .headers import safetensors_header
from .writer import copy_tensors

__all__ = ["assemble_checkpoint"]

_PathLike = str | os.PathLike[str]


def _unet_names_to_ldm(names: list[str], what: str) -> dict[str, str]:
    """``{file name: model.diffusion_model.* name}`` for a UNet-only file in the diffusers
    layout (``down_blocks.*``, optionally under ``unet.``) or the ldm layout (``input_blocks.*``,
    optionally under ``model.diffusion_model.``)."""
    if any(".input_blocks." in f".{n}" for n in names):
        return {n: n if n.startswith(_UNET_PREFIX) else _UNET_PREFIX + n for n in names}
    bare = {n: n[len("unet.") :] if n.startswith("unet.") else n for n in names}
    if not any(b.startswith("down_blocks.") for b in bare.values()):
        raise InvalidInputError(
            f"{what} is not a UNet: it has neither diffusers (down_blocks.*) nor ldm (input_blocks.*) UNet tensors"
        )
    resnets = {int(m.group(1)) for b in bare.values() if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", b))}
    attn_up = frozenset(int(m.group(1)) for b in bare.values() if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", b)))
    out: dict[str, str] = {}
    unknown = []
    for n, b in bare.items():
        new = unet_name_to_ldm(b, len(resnets) or 2, attn_up)
        if new is None:
            unknown.append(n)
        else:
            out[n] = new
    if unknown:
        more = f" (and {len(unknown) - 8} more)" if len(unknown) > 8 else ""
        raise InvalidInputError(f"{what}: tensors with no place in an ldm UNet: {', '.join(sorted(unknown)[:8])}{more}")
    return out


def assemble_checkpoint(base: _PathLike, unet: _PathLike, dst: _PathLike, *, overwrite: bool = False) -> Path:
    """Write ``dst``: the single-file checkpoint ``base`` with its UNet replaced by ``unet``.

    For models published as a UNet only, such as SDXL-Lightning's
    ``sdxl_lightning_4step_unet.safetensors`` (diffusers layout): ``base`` is the full base
    checkpoint (``sd_xl_base_1.0.safetensors``, ldm names), and the result is one file that
    every engine loads (text encoders and VAE from ``base``, UNet from ``unet``).

    ``unet`` may use diffusers names (``down_blocks.*``, optionally under ``unet.``) or ldm
    names (``input_blocks.*``, optionally under ``model.diffusion_model.``).  Every UNet tensor
    of ``base`` must be replaced by one of the same shape: otherwise the two files are of
    different architectures and :class:`gouache.InvalidInputError` lists the differences.
    Tensor bytes are copied unchanged (dtypes kept), in chunks, so memory stays small; the
    write is atomic and an existing ``dst`` is kept unless ``overwrite=True``.  Returns ``dst``.
    """
    b, u, d = Path(base), Path(unet), Path(dst)
    for path, what in ((b, "base"), (u, "unet")):
        if not path.is_file():
            raise InvalidInputError(f"{what} checkpoint not found: {str(path)!r}")
        if d.resolve() == path.resolve():
            raise InvalidInputError(f"dst must differ from the {what} checkpoint ({str(path)!r})")
    if d.exists():
        check_writable([d], overwrite=overwrite)  # refuse before copying gigabytes
    b_header, b_start = safetensors_header(b)
    u_header, u_start = safetensors_header(u)
    b_header.pop("__metadata__", None)
    u_header.pop("__metadata__", None)
    renamed = _unet_names_to_ldm(list(u_header), f"unet {str(u)!r}")
    new = {renamed[n]: u_header[n] for n in u_header}
    old = {n: v for n, v in b_header.items() if n.startswith(_UNET_PREFIX)}
    if not old:
        raise InvalidInputError(f"base {str(b)!r} has no UNet (no {_UNET_PREFIX}* tensors); pass a full checkpoint")
    missing = sorted(set(old) - set(new))
    extra = sorted(set(new) - set(old))
    shapes = sorted(n for n in set(old) & set(new) if list(old[n]["shape"]) != list(new[n]["shape"]))
    if missing or extra or shapes:
        parts = []
        for label, names in (("missing from unet", missing), ("not in base", extra), ("shape differs", shapes)):
            if names:
                more = f" (and {len(names) - 3} more)" if len(names) > 3 else ""
                parts.append(f"{label}: {', '.join(names[:3])}{more}")
        raise InvalidInputError(
            f"unet {str(u)!r} does not fit base {str(b)!r} (a UNet of another architecture?): " + "; ".join(parts)
        )
    entries = []
    for name, info in sorted(b_header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        entries.append((name, new[name], u, u_start) if name in new else (name, info, b, b_start))
    metadata = {"gouache.assemble": f"base {b.name}, unet {u.name}"}
    return copy_tensors(d, entries, metadata, overwrite=overwrite)
