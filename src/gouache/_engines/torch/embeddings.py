"""Prompt embeddings computed once per prompt: the text encoder runs only when the prompt changes.

A few-step model spends a large share of an image in its text encoder (SDXS-512 at 1 step: the
CLIP pass costs about as much as the UNet call).  :class:`PromptCache` keeps the last few prompts'
embeddings, keyed by everything that changes them (prompt, negative prompt, whether the negative
is needed at all, clip skip, the LoRA adapters' weights), and hands diffusers the tensors instead of
the strings, so a repeated prompt never reaches the tokenizer or the text encoder again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

#: How many prompts' embeddings an engine keeps (a few MB each).
CACHE_SIZE = 8
#: The keywords of a diffusers pipeline call that the embeddings replace.
_TEXT_KEYS = ("prompt", "negative_prompt", "clip_skip")


class PromptCache:
    """The embeddings of the last :data:`CACHE_SIZE` prompts of one engine (least recently used
    leaves first).  ``hits`` / ``misses`` count look-ups (for tests and the benchmark)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple, dict[str, Any]] = OrderedDict()

    def clear(self) -> None:
        self._entries.clear()

    def substitute(self, pipe, kwargs: dict[str, Any], adapters: tuple) -> dict[str, Any]:
        """``kwargs`` of a pipeline call with the prompt strings replaced by (cached) embeddings."""
        cfg = float(kwargs.get("guidance_scale", 1.0)) > 1.0
        key = (kwargs.get("prompt"), kwargs.get("negative_prompt"), cfg, kwargs.get("clip_skip"), adapters)
        embeds = self._entries.get(key)
        if embeds is None:
            self.misses += 1
            embeds = _encode(pipe, kwargs, cfg)
            self._entries[key] = embeds
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        else:
            self.hits += 1
            self._entries.move_to_end(key)
        out = {k: v for k, v in kwargs.items() if k not in _TEXT_KEYS}
        out.update(embeds)
        return out


def _encode(pipe, kwargs: dict[str, Any], cfg: bool) -> dict[str, Any]:
    """The embedding keywords of ``pipe`` for one image per prompt (diffusers repeats them for a
    batch itself): SD1/SD2 give two tensors, SDXL four (with the pooled ones)."""
    out = pipe.encode_prompt(
        prompt=kwargs.get("prompt"),
        device=pipe._execution_device,
        num_images_per_prompt=1,
        do_classifier_free_guidance=cfg,
        negative_prompt=kwargs.get("negative_prompt"),
        clip_skip=kwargs.get("clip_skip"),
    )
    names = ("prompt_embeds", "negative_prompt_embeds")
    if len(out) == 4:
        names += ("pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    return {name: tensor for name, tensor in zip(names, out, strict=True) if tensor is not None}
