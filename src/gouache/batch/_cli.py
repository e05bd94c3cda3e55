"""``gouache batch``: a manifest or a folder of scenes in, one file per item and results.jsonl out.

Hooked into the ``gouache`` command by :func:`add_parser` (the subcommand) and :func:`run`
(returns the exit code: 0 every item done or skipped, 1 some item failed; bad options
raise :class:`gouache.InvalidInputError`, which the command turns into exit code 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

_GENERATION_DEFAULTS = (
    "negative_prompt",
    "width",
    "height",
    "steps",
    "cfg_scale",
    "sampler",
    "scheduler",
    "clip_skip",
    "strength",
    "control_strength",
    "eta",
)


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    s = subparsers.add_parser(
        "batch",
        parents=list(parents),
        help="run a batch job (manifest or scene folder), in-process or on Ray",
        description="Generate or enhance every item of a JSONL/CSV manifest or a folder of scenes; one file per"
        " item under --out plus results.jsonl. Re-running skips finished items.",
    )
    s.add_argument("source", help="manifest (.jsonl, .csv) or a folder of scenes (<scene>/<view>.png)")
    s.add_argument("-o", "--out", required=True, type=Path, help="output folder (created if missing)")
    s.add_argument(
        "--kind",
        choices=["generate", "enhance"],
        help="default: enhance for folders and manifests with an image column, else generate",
    )
    s.add_argument(
        "--seed",
        type=int,
        help="generation: items without a seed get SEED + row (default: a seed"
        " derived from the item id); enhancement: seed of scenes without one",
    )
    s.add_argument(
        "--format",
        dest="image_format",
        default="png",
        choices=["png", "jpg", "webp"],
        help="output format (png keeps parameters and alpha)",
    )

    m = s.add_argument_group("model")
    m.add_argument("-m", "--model", metavar="PATH", help="checkpoint (generation) or the enhancement model")
    for flag in ("--diffusion-model", "--vae", "--taesd", "--clip-l", "--clip-g", "--t5xxl"):
        m.add_argument(flag, metavar="PATH")
    m.add_argument(
        "--control-net",
        "--controlnet",
        dest="control_net",
        metavar="PATH",
        help="ControlNet (generation: for control_image rows; enhancement: the depth ControlNet)",
    )
    m.add_argument("--lora-dir", metavar="DIR", help="where LoRA names in manifests resolve")
    m.add_argument("--embeddings", metavar="DIR")
    m.add_argument("--engine", default="auto", choices=["auto", "sdcpp", "torch"])
    m.add_argument("--threads", default="auto", help="CPU threads per worker ('auto': its CPUs)")
    m.add_argument("--weight-type", metavar="TYPE", help="convert weights while loading: f16, q8_0, ...")
    m.add_argument("--rng", default="cuda", choices=["cuda", "cpu", "std_default"])
    m.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])

    d = s.add_argument_group("defaults for rows that leave a value unset (generation)")
    d.add_argument("-n", "--negative-prompt")
    d.add_argument("-W", "--width", type=int)
    d.add_argument("-H", "--height", type=int)
    d.add_argument("--steps", type=int, help="sampling steps (enhancement: denoising steps)")
    d.add_argument("--cfg-scale", type=float)
    d.add_argument("--sampler")
    d.add_argument("--scheduler")
    d.add_argument("--clip-skip", type=int)
    d.add_argument("--strength", type=float, help="img2img strength (enhancement too)")
    d.add_argument("--control-strength", type=float)
    d.add_argument("--eta", type=float)

    e = s.add_argument_group("enhancement")
    e.add_argument("--preset", default="cpu", choices=["t4_gpu", "quality", "speed", "cpu"])
    e.add_argument("--depth-model", metavar="PATH", help="ONNX depth model for views without a depth map")
    e.add_argument("--lora", action="append", default=[], metavar="PATH[:WEIGHT]")
    e.add_argument("--template", help="prompt template for views without a prompt")
    e.add_argument("--subject", help="subject for the template")
    e.add_argument("--controlnet-scale", type=float)
    e.add_argument("--working-size", type=int)

    r = s.add_argument_group('Ray (pip install "gouache[ray]")')
    r.add_argument("--ray", action="store_true", help="run on Ray Data (a local Ray unless --address)")
    r.add_argument("--address", help="Ray cluster to join ('auto', 'ray://head:10001'); implies --ray")
    r.add_argument("--actors", type=int, default=1, help="workers, each loading the model once (default 1)")
    r.add_argument("--cpus-per-actor", type=float, default=1.0)
    r.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per actor (0.5: two actors per GPU)")
    r.add_argument("--max-retries", type=int, default=3, help="retries of a unit whose actor died")
    return s


def run(a: argparse.Namespace) -> int:
    from . import BatchJob, RayOptions, read_items, run_batch

    items = read_items(a.source, a.kind)
    kind = items[0].kind
    job = BatchJob(items, a.out, seed=a.seed, image_format=a.image_format, **_model_args(a, kind))
    ray = None
    if a.ray or a.address:
        quiet = {"log_to_driver": False} if a.json or a.quiet else {}  # stdout carries only the summary
        ray = RayOptions(
            address=a.address,
            actors=a.actors,
            cpus_per_actor=a.cpus_per_actor,
            gpus_per_actor=a.gpus_per_actor,
            max_retries=a.max_retries,
            init_kwargs=quiet,
        )
    bar = _Bar(enabled=not (a.quiet or a.json), total=len(items))
    try:
        summary = run_batch(job, ray=ray, progress=bar.update)
    finally:
        bar.close()
    if a.json:
        print(json.dumps(summary.to_dict(), default=str))
    else:
        for f in summary.failures:
            print(f"gouache: {f.id}: {f.error}".splitlines()[0], file=sys.stderr)
        if not a.quiet:
            print(
                f"{summary.total} items: {summary.done} done, {summary.skipped} skipped, {summary.failed} failed"
                f" in {summary.seconds:.1f} s ({summary.items_per_second:.3f} items/s); results: {summary.results_path}"
            )
    return 0 if summary.ok else 1


def _model_args(a: argparse.Namespace, kind: str) -> dict[str, Any]:
    import gouache as g

    from . import ModelSpec

    threads: Any = a.threads
    if threads != "auto":
        try:
            threads = int(threads)
        except ValueError:
            raise g.InvalidInputError(f"--threads must be an integer or 'auto'; got {a.threads!r}") from None
    if kind == "enhance":
        return {"enhance": _enhance_config(a, threads)}
    if a.model is None and a.diffusion_model is None:
        raise g.InvalidInputError("gouache batch: a generation job needs -m/--model (or --diffusion-model)")
    options = g.EngineOptions(rng=a.rng, precision=a.precision)
    spec = ModelSpec(
        model=a.model,
        diffusion_model=a.diffusion_model,
        vae=a.vae,
        taesd=a.taesd,
        clip_l=a.clip_l,
        clip_g=a.clip_g,
        t5xxl=a.t5xxl,
        control_net=a.control_net,
        lora_dir=a.lora_dir,
        embeddings=a.embeddings,
        engine=a.engine,
        threads=threads,
        weight_type=a.weight_type,
        options=options,
    )
    defaults = {k: getattr(a, k) for k in _GENERATION_DEFAULTS if getattr(a, k) is not None}
    return {"model": spec, "defaults": defaults}


def _enhance_config(a: argparse.Namespace, threads: Any):
    from gouache.enhance import EnhanceConfig

    preset = {
        "t4_gpu": EnhanceConfig.for_t4_gpu,
        "quality": EnhanceConfig.for_quality,
        "speed": EnhanceConfig.for_speed,
        "cpu": EnhanceConfig.for_cpu,
    }[a.preset]
    given = {
        "model": a.model,
        "controlnet": a.control_net,
        "vae": a.vae,
        "taesd": a.taesd,
        "lightning_steps": a.steps,
        "strength": a.strength,
        "controlnet_scale": a.controlnet_scale,
        "working_size": a.working_size,
        "depth_model": a.depth_model,
        "prompt_template": a.template,
        "default_subject": a.subject,
    }
    kw = {k: v for k, v in given.items() if v is not None}
    if a.lora:
        kw["loras"] = tuple(_lora(v) for v in a.lora)
    return preset(engine=a.engine, threads=threads, **kw)


def _lora(value: str) -> tuple[str, float]:
    name, sep, weight = value.rpartition(":")
    try:
        return (name, float(weight)) if sep and name else (value, 1.0)
    except ValueError:
        return (value, 1.0)


class _Bar:
    """An item progress bar on stderr (tqdm)."""

    def __init__(self, *, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="items", unit="item", file=sys.stderr, dynamic_ncols=True)

    def update(self, result: Any, finished: int, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.set_postfix_str(f"{result.id}: {result.status}", refresh=False)
            self.bar.update(finished - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
