"""`encoderkit attention`: the attention page (and optionally a PNG grid) for one text or pair."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError


def parse_indices(text: str | None, n: int, what: str) -> list[int] | None:
    """``"0-3,8,10-11"`` -> ``[0, 1, 2, 3, 8, 10, 11]``, checked against ``n`` (None: all).

    Raises:
        InputError: not a list of indices and ranges, out of 0..n-1, a backwards range, or a repeat.
    """
    if text is None:
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            lo, _, hi = part.partition("-")
            a, b = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise InputError(f"--{what} {text!r}: expected indices and ranges like 0-3,8") from None
        if b < a:
            raise InputError(f"--{what} {text!r}: range {part} runs backwards")
        if not (0 <= a and b < n):
            raise InputError(f"--{what} {text!r}: out of range, the model has {n} {what} (0-{n - 1})")
        out.extend(range(a, b + 1))
    if len(set(out)) != len(out):
        raise InputError(f"--{what} {text!r}: an index is listed twice")
    return out


def cmd_attention(a: argparse.Namespace) -> None:
    import numpy as np

    from .. import load
    from ..cli import emit, runtime_options
    from ..io import atomic_write_text
    from ..progress import bar as progress_bar
    from ..progress import stream
    from . import attention_record, render

    out = Path(a.out)
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file name such as view.html")
    if not out.parent.exists():
        raise InputError(f"--out {out}: directory {out.parent} does not exist")
    if a.compare is not None and a.compare == a.backend:
        raise InputError(f"--compare {a.compare} is the same backend as --backend")
    steps = ["load", "attention"] + (["load compare", "attention compare"] if a.compare else []) + ["render"] \
        + (["png"] if a.png else [])
    bar = progress_bar(total=len(steps), desc="attention", unit="step")

    def step(name: str) -> None:
        bar.set_postfix_str(name)

    opts = runtime_options(a)
    step("load")
    rt = load(a.model, a.backend, **opts)
    layers = parse_indices(a.layers, rt.spec.num_layers, "layers")
    heads = parse_indices(a.heads, rt.spec.num_heads, "heads")
    bar.update()
    step("attention")
    record = attention_record(rt, a.text, a.pair, truncate=a.truncate)
    bar.update()
    compare = None
    if a.compare:
        step("load compare")
        rt2 = load(a.model, a.compare, **opts)
        bar.update()
        step("attention compare")
        compare = attention_record(rt2, a.text, a.pair, truncate=a.truncate)
        bar.update()
    step("render")
    page = render(record, compare=compare, layers=layers, heads=heads, hide_special=a.hide_special,
                  thumb_scale=a.thumb_scale)
    atomic_write_text(out, page)
    bar.update()
    if a.png:
        from .png import save_png

        step("png")
        save_png(record, a.png, layers=layers, heads=heads, hide_special=a.hide_special)
        bar.update()
    bar.close()
    n_l, n_h = len(layers or range(rt.spec.num_layers)), len(heads or range(rt.spec.num_heads))
    vs = f", compared with {compare.backend}" if compare else ""
    if compare is not None and np.array_equal(compare.probs, record.probs):
        # e.g. onnx-int8 vs onnx today: every ONNX backend returns attention from one fp32 analysis graph
        print(f"warning: {compare.backend} returned attention identical to {record.backend}'s (the same graph "
              "computes both), so the compare view shows zeros", file=stream())
    size = len(page.encode())
    size_text = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"
    emit(f"wrote {out} ({size_text}: {len(record.tokens)} tokens, {n_l} layers x {n_h} heads, {record.backend}{vs})"
         + (f" and {a.png}" if a.png else ""))


def attention_backend(value: str) -> str:
    """A backend name that gives attention probabilities (its registry row is not last-layer-only).

    Raises:
        UnknownNameError: unknown name. argparse.ArgumentTypeError: a last-layer-only backend,
            naming the ones to use (argparse prints it as the flag's error).
    """
    from ..cli import backend_name
    from ..registry import BACKENDS

    name = backend_name(value)
    if BACKENDS[name].last_layer_only:
        raise argparse.ArgumentTypeError(
            f"backend {name} gives the last layer only, no attention probabilities; choose one of: "
            f"{', '.join(b.name for b in BACKENDS.values() if not b.last_layer_only)}")
    return name


def add_parser(sub, parents: list | None = None) -> argparse.ArgumentParser:
    """Register the ``attention`` subcommand on the CLI's subparsers."""
    from ..registry import BACKENDS

    backend_name = attention_backend
    names = ", ".join(b.name for b in BACKENDS.values() if not b.last_layer_only)
    s = sub.add_parser("attention", parents=parents or [],
                       help="write an interactive attention page (self-contained HTML)")
    s.add_argument("model", help="checkpoint dir, hub id, packaged name (minilm) or convert output")
    s.add_argument("text", metavar="TEXT")
    s.add_argument("--pair", metavar="TEXT_B", default=None, help="second text: the tokenizer's pair encoding")
    s.add_argument("--backend", default=None, type=backend_name, help=names)
    s.add_argument("--compare", metavar="B2", default=None, type=backend_name,
                   help=f"also run backend B2 ({names}) and show B2 minus BACKEND")
    s.add_argument("--out", required=True, help="the HTML file to write")
    s.add_argument("--png", default=None, help="also write a static layers x heads grid (matplotlib)")
    s.add_argument("--layers", default=None, help="layers to include, e.g. 0-23 or 0,5,11 (default: all)")
    s.add_argument("--heads", default=None, help="heads to include, e.g. 0,3,7 (default: all)")
    s.add_argument("--hide-special", action="store_true", help="open with special tokens hidden")
    s.add_argument("--thumb-scale", choices=["absolute", "own", "log", "uniform"], default=None,
                   help="the model view's thumbnail colours to open with (a menu on the page switches): absolute "
                        "0-1, each to its own range, log attention, or relative to uniform 1/n (default: absolute "
                        "up to 128 tokens, uniform above)")
    s.add_argument("--truncate", action="store_true", help="cut an input longer than the model")
    s.add_argument("--threads", type=int, default=None)
    s.set_defaults(func=cmd_attention)
    return s
