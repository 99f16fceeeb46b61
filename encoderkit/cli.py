"""The `encoderkit` command line: thin -- parse, call one function, print.

Every choice it offers (backends, formats, converter options, tasks) is generated from
``encoderkit.registry`` and the converters' option dataclasses. Errors caused by input print one
line on stderr and exit 2; internal failures exit 1; no traceback unless --debug. Third-party
chatter is captured (``encoderkit.logs``) and shown with --verbose; stdout carries only results.
"""
from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .batch.cli import add_batch_args, run_from_args, wants_batch
from .errors import EncoderkitError

OUT = sys.stdout  # results; main() points it at the real stdout while third-party output is captured


def emit(text: str) -> None:
    print(text, file=OUT, flush=True)


def cmd_init_random(a: argparse.Namespace) -> None:
    from .random_init import init_random

    spec = init_random(Path(a.out), a.size, seed=a.seed, arch=a.arch, force=a.force)
    emit(f"wrote random {a.arch} checkpoint ({a.size}: {spec.num_layers} layers, hidden {spec.hidden_size}, "
         f"vocab {spec.vocab_size}, seed {a.seed}) to {a.out}")


def runtime_options(a: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for key in ("threads", "max_tokens"):
        if getattr(a, key, None) is not None:
            opts[key] = getattr(a, key)
    if getattr(a, "allow_pickle", False):
        opts["allow_pickle"] = True
    if getattr(a, "trust_artifact", False):
        opts["trust_artifact"] = True
    return opts


def _runtime(a: argparse.Namespace):
    from .runtimes import load

    return load(a.model, a.backend, **runtime_options(a))


def cmd_fill_mask(a: argparse.Namespace) -> None:
    if wants_batch(a):
        return run_from_args(a, "fill-mask", {"top_k": a.top_k, "targets": a.targets, "truncate": a.truncate})
    rt = _runtime(a)
    results = rt.fill_mask(a.texts, top_k=a.top_k, targets=a.targets, truncate=a.truncate)
    if a.json:
        emit(json.dumps(results, ensure_ascii=False))
        return
    for text, per_mask in zip(a.texts, results):
        emit(text)
        for m, preds in enumerate(per_mask):
            if len(per_mask) > 1:
                emit(f"  mask {m + 1}:")
            for p in preds:
                emit(f"  {p['score']:.4f}  {p['token_str']!r:<16} {p['sequence']}")


def cmd_embed(a: argparse.Namespace) -> None:
    if wants_batch(a):
        return run_from_args(a, "embed", {"pooling": a.pooling, "layer": a.layer, "normalize": a.normalize,
                                          "truncate": a.truncate})
    rt = _runtime(a)
    emb = rt.embed(a.texts, pooling=a.pooling, layer=a.layer, normalize=a.normalize, truncate=a.truncate)
    if a.json:
        emit(json.dumps(emb.tolist()))
        return
    for text, e in zip(a.texts, emb):
        head = " ".join(f"{x:+.4f}" for x in e[:6])
        emit(f"[{head} ...] dim {e.shape[0]} norm {float((e ** 2).sum() ** 0.5):.4f}  {text}")


def cmd_info(a: argparse.Namespace) -> None:
    from .checkpoint import read_saved_spec, resolve_model
    from .io import read_manifest
    from .runtimes import available_backends

    path = resolve_model(a.model)
    manifest = read_manifest(path)
    if manifest and manifest.get("kind") == "convert":
        fmt = manifest["formats"][0]
        spec = read_saved_spec(path / fmt)
        info = {"path": str(path), "kind": "converted", "formats": manifest["formats"],
                "backends": available_backends(path), **spec.to_dict()}
    else:
        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(a.model, allow_pickle=a.allow_pickle)
        n = sum(v.size for v in ckpt.state.values())
        info = {"path": str(ckpt.directory), "kind": "checkpoint", "parameters": int(n), **ckpt.spec.to_dict()}
    if a.json:
        emit(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            emit(f"{k:<{width}}  {v}")


def conversion_option_classes() -> list[tuple[str, type]]:
    """(owner, options dataclass) of every format, then validation: the `convert` flags."""
    from .converters import converter
    from .registry import FORMATS
    from .validate import ValidationOptions

    return [(f, converter(f).Options) for f in FORMATS] + [("validation", ValidationOptions)]


def cmd_convert(a: argparse.Namespace) -> None:
    from .converters import parse_formats
    from .options import values_from_namespace
    from .pipeline import convert

    options: dict[str, Any] = {}
    for _, cls in conversion_option_classes():
        options |= values_from_namespace(a, cls)
    convert(a.model, parse_formats(a.to), Path(a.out), force=a.force, allow_pickle=a.allow_pickle, **options)
    emit(f"wrote {a.out} (report: {Path(a.out) / 'report.md'})")


def cmd_bench(a: argparse.Namespace) -> None:
    from .bench import run_bench

    backends = [b for b in a.backends.split(",") if b] if a.backends else None
    run_bench(a.model, backends=backends, tasks=a.task.split(","), out=Path(a.out), repeats=a.repeats,
              quick=a.quick, optimum_python=a.optimum_python)


def _backend_help() -> str:
    from .registry import BACKENDS

    return "backend: " + ", ".join(BACKENDS) + " (default: torch for a checkpoint, else the first the directory holds)"


def backend_name(value: str) -> str:
    from .registry import backend

    return backend(value).name  # UnknownNameError (exit 2) lists the valid names


def build_parser() -> argparse.ArgumentParser:
    from .architectures import ARCHITECTURES, DEFAULT_ARCH
    from .options import add_cli_flags
    from .random_init import SIZES
    from .registry import FORMATS
    from .tasks.embed import POOLINGS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show third-party warnings and logs (exporters, frameworks)")
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or status lines")
    p = argparse.ArgumentParser(prog="encoderkit", parents=[common],
                                description="One encoder checkpoint, every runtime, same answers.")
    p.add_argument("--version", action="version", version=f"encoderkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("init-random", parents=[common], help="write a random-weight checkpoint with a real tokenizer")
    s.add_argument("out")
    s.add_argument("--size", default="tiny", choices=list(SIZES))
    s.add_argument("--arch", default=DEFAULT_ARCH, choices=list(ARCHITECTURES))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--force", action="store_true", help="replace OUT if it exists")
    s.set_defaults(func=cmd_init_random)

    def model_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("model", help="checkpoint dir, hub id, packaged name (minilm) or convert output")
        s.add_argument("texts", nargs="*", metavar="TEXT", help="texts (or --input FILE)")
        s.add_argument("--backend", default=None, type=backend_name, help=_backend_help())
        s.add_argument("--threads", type=int, default=None, help="intra-op threads (positive)")
        s.add_argument("--max-tokens", type=int, default=None, help="token budget per batch (positive)")
        s.add_argument("--truncate", action="store_true", help="cut texts longer than the model")
        s.add_argument("--allow-pickle", action="store_true")
        s.add_argument("--trust-artifact", action="store_true",
                       help="load a TF SavedModel even if it is not provably one encoderkit exported (it runs code)")
        s.add_argument("--json", action="store_true")
        add_batch_args(s)

    s = sub.add_parser("fill-mask", parents=[common], help="predict the mask token(s)")
    model_args(s)
    s.add_argument("--top-k", type=int, default=5)
    s.add_argument("--targets", nargs="+", default=None)
    s.set_defaults(func=cmd_fill_mask)

    s = sub.add_parser("embed", parents=[common], help="pooled sentence embeddings")
    model_args(s)
    s.add_argument("--pooling", default="mean", choices=list(POOLINGS))
    s.add_argument("--layer", type=int, default=-1)
    s.add_argument("--normalize", action="store_true")
    s.set_defaults(func=cmd_embed)

    s = sub.add_parser("info", parents=[common], help="describe a checkpoint or converted model")
    s.add_argument("model")
    s.add_argument("--allow-pickle", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("convert", parents=[common], help="export to other formats, validated against torch")
    s.add_argument("model")
    s.add_argument("--to", required=True, help=f"comma list of {','.join(FORMATS)} or 'all'")
    s.add_argument("--out", required=True)
    seen: dict = {}  # flags several formats share (--quantize) are added once
    for owner, cls in conversion_option_classes():
        add_cli_flags(s.add_argument_group(f"{owner} options"), cls, seen, owner)
    s.add_argument("--force", action="store_true")
    s.add_argument("--allow-pickle", action="store_true")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("bench", parents=[common], help="throughput/latency of backends against the usual tools")
    s.add_argument("model")
    s.add_argument("--backends", default=None,
                   help="comma list (default: every installed backend the model directory holds)")
    s.add_argument("--task", default="fill-mask,embed")
    s.add_argument("--out", default="bench-out")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--quick", action="store_true", help="small workloads (tests)")
    s.add_argument("--optimum-python", default=None, metavar="PYTHON",
                   help="python of optimum's venv (make optimum-venv): adds optimum's O2 and int8 recipe as "
                        "embed peers (default: $ENCODERKIT_OPTIMUM_PYTHON; without it they are listed as skipped)")
    s.set_defaults(func=cmd_bench)

    from .viewer.cli import add_parser as attention_parser

    attention_parser(sub, parents=[common])

    from .deploy.cli import add_parser as package_parser  # `encoderkit package` (deploy/)

    package_parser(sub, parents=[common])

    from .finetune.cli import add_parsers as finetune_parsers  # classify + finetune

    finetune_parsers(sub, parents=[common])
    return p


def _os_error(e: OSError) -> str:
    where = e.filename or ""
    what = e.strerror or str(e)
    hint = {errno.ENOSPC: "free disk space", errno.EACCES: "choose a writable location",
            errno.EROFS: "choose a writable location", errno.EPERM: "choose a writable location",
            errno.ENOENT: "check the path", errno.ENOTDIR: "check the path",
            errno.EISDIR: "give a file, not a directory"}.get(e.errno, "check the path and the disk")
    return f"{where}: {what}; {hint}" if where else f"{what}; {hint}"


def main(argv: list[str] | None = None) -> int:
    global OUT
    from . import progress
    from .logs import captured

    parser = build_parser()
    try:
        a = parser.parse_args(argv)
    except EncoderkitError as e:  # a registry lookup inside argparse's type= (e.g. --backend)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # argparse's own usage errors (exit 2) and --help/--version (exit 0)
        return e.code if isinstance(e.code, int) else 2
    debug, verbose = getattr(a, "debug", False), getattr(a, "verbose", False)
    with captured(verbose=verbose or debug) as streams:
        OUT = streams.out
        progress.configure(stream=streams.err, quiet=getattr(a, "quiet", False))

        def fail(msg: str, code: int) -> int:
            tail = streams.tail() if code == 1 else ""
            if tail:
                print(f"(last lines of captured third-party output)\n{tail.rstrip()}", file=streams.err)
            print(msg, file=streams.err)
            return code

        try:
            a.func(a)
        except EncoderkitError as e:
            if debug:
                raise
            return fail(f"error: {e}", 2)
        except KeyboardInterrupt:
            return fail("interrupted", 130)
        except OSError as e:  # unreadable input, read-only target, full disk: the environment, not us
            if debug:
                raise
            return fail(f"error: {_os_error(e)}", 2)
        except Exception as e:  # noqa: BLE001 - the one place that turns crashes into exit 1
            if debug:
                raise
            return fail(f"internal error: {type(e).__name__}: {e} (re-run with --debug for the traceback)", 1)
        finally:
            progress.reset()
            OUT = sys.stdout
    return 0


if __name__ == "__main__":
    # `python -m encoderkit.cli`: run the importable module's main, so that subcommands living in
    # other modules (viewer, classify, finetune) emit through the same OUT as this one
    from encoderkit.cli import main as _main

    sys.exit(_main())
