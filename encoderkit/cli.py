"""The `encoderkit` command line.

Errors caused by input print one line on stderr and exit 2; internal failures exit 1; no
traceback unless --debug.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .errors import EncoderkitError


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_init_random(a: argparse.Namespace) -> None:
    from .random_init import init_random

    spec = init_random(Path(a.out), a.size, seed=a.seed, arch=a.arch, force=a.force)
    print(f"wrote random {a.arch} checkpoint ({a.size}: {spec.num_layers} layers, hidden {spec.hidden_size}, "
          f"vocab {spec.vocab_size}, seed {a.seed}) to {a.out}")


def _runtime(a: argparse.Namespace):
    from .runtimes import load

    opts: dict[str, Any] = {}
    if a.threads:
        opts["threads"] = a.threads
    if a.max_tokens:
        opts["max_tokens"] = a.max_tokens
    if getattr(a, "allow_pickle", False):
        opts["allow_pickle"] = True
    return load(a.model, a.backend, **opts)


def cmd_fill_mask(a: argparse.Namespace) -> None:
    rt = _runtime(a)
    results = rt.fill_mask(a.texts, top_k=a.top_k, targets=a.targets, truncate=a.truncate)
    if a.json:
        print(json.dumps(results, ensure_ascii=False))
        return
    for text, per_mask in zip(a.texts, results):
        print(text)
        for m, preds in enumerate(per_mask):
            if len(per_mask) > 1:
                print(f"  mask {m + 1}:")
            for p in preds:
                print(f"  {p['score']:.4f}  {p['token_str']!r:<16} {p['sequence']}")


def cmd_embed(a: argparse.Namespace) -> None:
    rt = _runtime(a)
    emb = rt.embed(a.texts, pooling=a.pooling, layer=a.layer, normalize=a.normalize, truncate=a.truncate)
    if a.json:
        print(json.dumps(emb.tolist()))
        return
    for text, e in zip(a.texts, emb):
        head = " ".join(f"{x:+.4f}" for x in e[:6])
        print(f"[{head} ...] dim {e.shape[0]} norm {float((e ** 2).sum() ** 0.5):.4f}  {text}")


def cmd_info(a: argparse.Namespace) -> None:
    from .checkpoint import read_saved_spec, resolve_model
    from .io import read_manifest

    path = resolve_model(a.model)
    manifest = read_manifest(path)
    if manifest and manifest.get("kind") == "convert":
        fmt = manifest["formats"][0]
        spec = read_saved_spec(path / fmt)
        info = {"path": str(path), "kind": "converted", "formats": manifest["formats"], **spec.to_dict()}
    else:
        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(a.model, allow_pickle=a.allow_pickle)
        n = sum(v.size for v in ckpt.state.values())
        info = {"path": str(ckpt.directory), "kind": "checkpoint", "parameters": int(n), **ckpt.spec.to_dict()}
    if a.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")


def cmd_convert(a: argparse.Namespace) -> None:
    from .converters import convert, parse_formats

    options: dict[str, Any] = {"fuse": not a.no_fuse, "quantize": a.quantize, "int8_source": a.int8_source,
                               "int8_weights": a.int8_weights}
    thresholds = {k: v for k, v in (("top1", a.min_top1), ("top5", a.min_top5), ("cosine", a.min_cosine))
                  if v is not None}
    if thresholds:
        options["thresholds"] = thresholds
    convert(a.model, parse_formats(a.to), Path(a.out), force=a.force, allow_pickle=a.allow_pickle,
            progress=_progress, **options)
    print(f"wrote {a.out} (report: {Path(a.out) / 'report.md'})")


def cmd_bench(a: argparse.Namespace) -> None:
    from .bench import run_bench

    run_bench(a.model, backends=[b for b in a.backends.split(",") if b], tasks=a.task.split(","),
              out=Path(a.out), repeats=a.repeats, quick=a.quick, progress=_progress)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="encoderkit", description="One encoder checkpoint, every runtime, same answers.")
    p.add_argument("--version", action="version", version=f"encoderkit {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("init-random", help="write a random-weight checkpoint with a real tokenizer")
    s.add_argument("out")
    s.add_argument("--size", default="tiny", choices=["tiny", "small", "base", "large"])
    s.add_argument("--arch", default="roberta", choices=["roberta", "bert"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--force", action="store_true", help="replace OUT if it exists")
    s.set_defaults(func=cmd_init_random)

    def model_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("model", help="checkpoint dir, hub id, packaged name (minilm) or convert output")
        s.add_argument("texts", nargs="+", metavar="TEXT")
        s.add_argument("--backend", default=None, help="torch, onnx, onnx-int8, onnx-fp16, tf, flax")
        s.add_argument("--threads", type=int, default=None)
        s.add_argument("--max-tokens", type=int, default=None, help="token budget per batch")
        s.add_argument("--truncate", action="store_true", help="cut texts longer than the model")
        s.add_argument("--allow-pickle", action="store_true")
        s.add_argument("--json", action="store_true")

    s = sub.add_parser("fill-mask", help="predict the mask token(s)")
    model_args(s)
    s.add_argument("--top-k", type=int, default=5)
    s.add_argument("--targets", nargs="+", default=None)
    s.set_defaults(func=cmd_fill_mask)

    s = sub.add_parser("embed", help="pooled sentence embeddings")
    model_args(s)
    s.add_argument("--pooling", default="mean", choices=["mean", "cls", "max"])
    s.add_argument("--layer", type=int, default=-1)
    s.add_argument("--normalize", action="store_true")
    s.set_defaults(func=cmd_embed)

    s = sub.add_parser("info", help="describe a checkpoint or converted model")
    s.add_argument("model")
    s.add_argument("--allow-pickle", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("convert", help="export to other formats, validated against torch")
    s.add_argument("model")
    s.add_argument("--to", required=True, help="comma list of safetensors,onnx,tf,flax or 'all'")
    s.add_argument("--out", required=True)
    s.add_argument("--quantize", default=None, metavar="int8|fp16|int8,fp16",
                   help="also write quantized ONNX encoders")
    s.add_argument("--no-fuse", action="store_true", help="keep the ONNX graph unfused")
    s.add_argument("--int8-source", choices=["fused", "unfused"], default="fused",
                   help="graph int8 quantizes: fused (default, keeps QKV fp32, more accurate) or unfused (faster)")
    s.add_argument("--int8-weights", choices=["u8", "s8"], default="u8",
                   help="int8 weight type: u8 (default, no AVX2 saturation) or s8 (faster without VNNI)")
    s.add_argument("--min-top1", type=float, default=None)
    s.add_argument("--min-top5", type=float, default=None)
    s.add_argument("--min-cosine", type=float, default=None)
    s.add_argument("--force", action="store_true")
    s.add_argument("--allow-pickle", action="store_true")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("bench", help="throughput/latency of backends against the usual tools")
    s.add_argument("model")
    s.add_argument("--backends", default="torch")
    s.add_argument("--task", default="fill-mask,embed")
    s.add_argument("--out", default="bench-out")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--quick", action="store_true", help="small workloads (tests)")
    s.set_defaults(func=cmd_bench)

    from .deploy.cli import add_parser as _add_package  # `encoderkit package` (deploy/)

    _add_package(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        a.func(a)
    except EncoderkitError as e:
        if a.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that turns crashes into exit 1
        if a.debug:
            raise
        print(f"internal error: {type(e).__name__}: {e} (re-run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
