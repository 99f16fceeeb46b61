"""`init-random`, `info`, `convert`: making and describing models."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import Context


def add_parsers(sub, parents: list[argparse.ArgumentParser]) -> None:
    from ..backends.catalog import FORMATS
    from ..core.architectures import ARCHITECTURES, DEFAULT_ARCH
    from ..core.heads import HEADS
    from ..core.options import add_cli_flags
    from ..storage.random_init import SIZES

    s = sub.add_parser("init-random", parents=parents, help="write a random-weight checkpoint with a real tokenizer")
    s.add_argument("out")
    s.add_argument("--size", default="tiny", choices=list(SIZES))
    s.add_argument("--arch", default=DEFAULT_ARCH, choices=list(ARCHITECTURES))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--head", default="mlm", choices=list(HEADS), help="the task head it carries (default: mlm)")
    s.add_argument("--labels", default=None, help="comma list of label names, for a head with labels")
    s.add_argument("--force", action="store_true", help="replace OUT if it exists")
    s.set_defaults(func=cmd_init_random)

    s = sub.add_parser("info", parents=parents, help="describe a checkpoint or converted model")
    s.add_argument("model")
    s.add_argument("--allow-pickle", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("convert", parents=parents, help="export to other formats, validated against torch")
    s.add_argument("model")
    s.add_argument("--to", required=True, help=f"comma list of {','.join(FORMATS)} or 'all' "
                                               f"({','.join(f.name for f in FORMATS.values() if f.in_all)})")
    s.add_argument("--out", required=True)
    seen: dict = {}  # flags several formats share (--quantize) are added once
    for owner, cls in conversion_option_classes():
        add_cli_flags(s.add_argument_group(f"{owner} options"), cls, seen, owner)
    s.add_argument("--force", action="store_true")
    s.add_argument("--allow-pickle", action="store_true")
    s.set_defaults(func=cmd_convert)


def cmd_init_random(a: argparse.Namespace, ctx: Context) -> None:
    from ..storage.random_init import init_random

    labels = tuple(x.strip() for x in a.labels.split(",")) if a.labels else None
    spec = init_random(Path(a.out), a.size, seed=a.seed, arch=a.arch, force=a.force, head=a.head, labels=labels)
    head = "" if a.head == "mlm" else f", {a.head} head" + (f" ({', '.join(spec.labels)})" if spec.labels else "")
    ctx.emit(f"wrote random {a.arch} checkpoint ({a.size}: {spec.num_layers} layers, hidden {spec.hidden_size}, "
             f"vocab {spec.vocab_size}, seed {a.seed}{head}) to {a.out}")


def cmd_info(a: argparse.Namespace, ctx: Context) -> None:
    from ..backends.loading import available_backends, converted_manifest
    from ..storage.checkpoint import load_checkpoint, resolve_model
    from ..storage.hf import read_saved_spec

    path = resolve_model(a.model)
    manifest = converted_manifest(path)
    if manifest is not None:
        fmt = manifest["formats"][0]
        spec = read_saved_spec(path / fmt)
        info: dict[str, Any] = {"path": str(path), "kind": "converted", "formats": manifest["formats"],
                                "backends": available_backends(path), **spec.to_dict()}
    else:
        ckpt = load_checkpoint(a.model, allow_pickle=a.allow_pickle)
        n = sum(v.size for v in ckpt.state.values())
        info = {"path": str(ckpt.directory), "kind": "checkpoint", "parameters": int(n), **ckpt.spec.to_dict()}
    if a.json:
        ctx.emit(json.dumps(info, indent=2))
        return
    width = max(map(len, info))
    for k, v in info.items():
        ctx.emit(f"{k:<{width}}  {v}")


def conversion_option_classes() -> list[tuple[str, type]]:
    """(owner, options dataclass) of every format, then validation: the `convert` flags."""
    from ..backends.catalog import FORMATS, converter
    from ..verify.gate import ValidationOptions

    return [(f, converter(f).Options) for f in FORMATS] + [("validation", ValidationOptions)]


def cmd_convert(a: argparse.Namespace, ctx: Context) -> None:
    from ..backends.catalog import parse_formats
    from ..conversion import convert
    from ..core.options import values_from_namespace

    options: dict[str, Any] = {}
    for _, cls in conversion_option_classes():
        options |= values_from_namespace(a, cls)
    convert(a.model, parse_formats(a.to), Path(a.out), force=a.force, allow_pickle=a.allow_pickle, **options)
    ctx.emit(f"wrote {a.out} (report: {Path(a.out) / 'report.md'})")
