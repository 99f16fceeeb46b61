"""`encoderkit package`: one subcommand, registered by ``add_parser`` from the main CLI."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import TARGETS


def cmd_package(a: argparse.Namespace) -> None:
    from ..cli import emit
    from ..progress import quiet as quiet_mode
    from ..progress import stream
    from . import package

    out = stream()  # the real terminal while the CLI captures third-party output
    bar = None
    if not (quiet_mode() or not (hasattr(out, "isatty") and out.isatty())):
        from tqdm import tqdm

        bar = tqdm(total=None, file=out, bar_format="{desc} [{elapsed}]", leave=False)

    def say(msg: str) -> None:
        if bar is not None:
            bar.set_description_str(msg)
            bar.refresh()

    try:
        bundle = package(a.converted, a.target, a.out, quantize=a.quantize, tasks=a.tasks,
                         max_length=a.max_length, pooling=a.pooling, normalize=a.normalize,
                         ort_format=a.ort, name=a.name, force=a.force, progress=say)
    finally:
        if bar is not None:
            bar.close()
    from ..cli import emit  # results go to the real stdout (main() captures third-party output)

    fp = bundle["footprint"]
    mb = fp["bundle_bytes"] / 1e6
    line = f"wrote {a.out} ({a.target}, {bundle['quantize']}, {mb:.1f} MB"
    if "load_seconds" in fp:
        line += (f"; runner loads in {fp['load_seconds']:.2f} s, one text {fp['embed_one_text_seconds'] * 1e3:.1f} ms, "
                 f"peak RSS {fp['peak_rss_mb']:.0f} MB")
    emit(line + ")")
    for ln in bundle.get("self_test", []):
        emit(f"  self-test: {ln}")


def add_parser(subparsers, parents: list | None = None) -> argparse.ArgumentParser:
    """Register ``package`` on the main CLI's subparsers."""
    s = subparsers.add_parser("package", parents=parents or [], help="package a converted model for deployment (self-verifying bundle)")
    s.add_argument("converted", help="an `encoderkit convert` output directory")
    s.add_argument("--target", required=True, choices=list(TARGETS))
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--quantize", default="none", choices=["none", "int8", "fp16"])
    s.add_argument("--tasks", default=None, help="comma list of embed,fill-mask (default: all the model supports)")
    s.add_argument("--max-length", type=int, default=None, help="longest input in tokens (default: the model's)")
    s.add_argument("--pooling", default=None, choices=["mean", "cls", "max"],
                   help="put this pooling into the bundled graph (sentence_embedding output)")
    s.add_argument("--normalize", action="store_true", help="with --pooling: L2-normalise in the graph too")
    s.add_argument("--ort", action="store_true", help="onnx/node: also write model.ort (ONNX Runtime Mobile)")
    s.add_argument("--name", default=None, help="model name in triton/tf-serving layouts")
    s.add_argument("--force", action="store_true", help="replace OUT if it exists")
    s.set_defaults(func=cmd_package)
    return s
