"""The attention viewer: one self-contained HTML page (model, head, matrix and compare views).

``render(record)`` returns the page as a string (a notebook can show it with
``IPython.display.HTML``); ``encoderkit attention`` writes it to a file. The page holds its
JS, CSS and data inline and makes no network request (a Content-Security-Policy forbids any).

Everything here reads only the fields of an ``AttentionRecord``; where the record comes from
(``_record.py`` today, ``encoderkit.tasks.attentions`` later) is the only thing that changes.
"""
from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from . import _data
from ._record import AttentionRecord, attention_record

__all__ = ["AttentionRecord", "attention_record", "check_outputs", "render", "select", "decode_page", "THUMB_SCALES"]

# How the model view's thumbnails are coloured (a menu on the page switches between them):
THUMB_SCALES = {
    "absolute": "max-pooled attention on one scale for every thumbnail (white 0, darkest 1)",
    "own": "max-pooled attention, each thumbnail from its own smallest (white) to its largest value",
    "log": "log10 of max-pooled attention (white 1e-4 or less, darkest 1)",
    "uniform": "mean-pooled attention relative to uniform attention 1/n: log2 ratio, blue below, red above",
}
LONG = 128  # longer inputs open with the 'uniform' thumbnails: absolute ones of spread-out heads look blank


def check_outputs(page: Path, png: Path | None = None, model: Path | None = None) -> None:
    """Refuse outputs that cannot both be written, before anything is computed or written: a
    directory, a missing folder, the page and the PNG at the same path (resolved: symlinks, ``..``
    and hard links included), or an output that is or lies inside the model directory.

    Raises:
        InputError: naming the flag and what to do.
    """
    from ..storage.files import refuse_overlap, refuse_special

    for flag, path in (("--out", page), ("--png", png)):
        if path is None:
            continue
        refuse_special(path, flag=flag)
        if path.is_dir():
            raise InputError(f"{flag} {path} is a directory; give a file name such as "
                             f"{'view.html' if flag == '--out' else 'grid.png'}")
        if not path.parent.is_dir():
            raise InputError(f"{flag} {path}: directory {path.parent} does not exist")
        refuse_overlap(path, [("model", model)], flag=flag)
    if png is not None:
        same = page.resolve() == png.resolve()
        if not same and page.exists() and png.exists():
            same = os.path.samefile(page, png)
        if same:
            raise InputError(f"--out and --png are the same file ({page}); give the PNG its own name")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def _check_indices(values: Sequence[int] | None, n: int, what: str) -> list[int]:
    if values is None:
        return list(range(n))
    out = [int(v) for v in values]
    if not out:
        raise InputError(f"no {what} selected")
    bad = [v for v in out if not 0 <= v < n]
    if bad:
        raise InputError(f"{what} {bad[0]} out of range: the model has {n} {what} (0-{n - 1})")
    if len(set(out)) != len(out):
        raise InputError(f"{what} listed twice: {out}")
    return out


def select(record: AttentionRecord, layers: Sequence[int] | None, heads: Sequence[int] | None
           ) -> tuple[np.ndarray, list[int], list[int]]:
    """The record's probabilities restricted to ``layers`` x ``heads`` (indices of the model).

    Returns:
        (probs [len(layers), len(heads), seq, seq], layers, heads).
    Raises:
        InputError: an index out of range, listed twice, or an empty selection.
    """
    n_layers, n_heads = record.probs.shape[:2]
    layers = _check_indices(layers, n_layers, "layers")
    heads = _check_indices(heads, n_heads, "heads")
    probs = record.probs
    if layers != list(range(n_layers)):
        probs = probs[layers]
    if heads != list(range(n_heads)):
        probs = probs[:, heads]
    return probs, layers, heads


def _plain_text(pieces: list[str], byte_level: bool) -> str:
    """Display tokens joined back into text (for the title): byte-level pieces carry their spaces,
    WordPiece ones are words unless they start with ##."""
    if byte_level:
        return "".join(p.replace("␣", " ") for p in pieces).strip()
    return " ".join(pieces).replace(" ##", "")


def _script_json(obj) -> str:
    # "</" would end the <script> element early: tokens such as "</s>" contain it.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def _blob(name: str, text: str) -> str:
    return f'<script type="application/octet-stream" id="ek-{name}">{text}</script>\n'


def render(record: AttentionRecord, *, compare: AttentionRecord | None = None,
           layers: Sequence[int] | None = None, heads: Sequence[int] | None = None,
           title: str | None = None, hide_special: bool = False, thumb_scale: str | None = None) -> str:
    """The self-contained attention page for ``record``.

    Args:
        record: attention of one text (or pair) on one backend.
        compare: the same input on another backend; adds the compare view of ``compare - record``
            (difference heatmap per head, largest |diff| per layer).
        layers, heads: model indices to include (default: all).
        title: the page title (default: the backend and the first tokens).
        hide_special: start with special tokens hidden (a checkbox toggles it).
        thumb_scale: the model view's colour scale to open with, one of ``THUMB_SCALES`` (default:
            "absolute" up to 128 tokens, "uniform" above).
    Returns:
        The HTML page, UTF-8 text.
    Raises:
        InputError: bad layer/head selection, ``compare`` is not for the same tokens, or an unknown
            ``thumb_scale``.
    """
    if thumb_scale is not None and thumb_scale not in THUMB_SCALES:
        raise InputError(f"thumb scale {thumb_scale!r}: choose one of {', '.join(THUMB_SCALES)}")
    probs, layers, heads = select(record, layers, heads)
    seq = len(record.tokens)
    if probs.shape[-2:] != (seq, seq):
        raise InputError(f"record holds [{probs.shape[-2]} x {probs.shape[-1]}] matrices for {seq} tokens")
    byte_level = _data.is_byte_level(record.tokens)
    special = np.asarray(record.special, dtype=bool)
    keep = ~special
    q, qerr = _data.quantize(probs)
    blobs = [_blob("probs", _data.pack(q))]
    thumb_meta = {}
    for name, sel in (("all", None), ("no_special", keep)):
        mx, mean, t = _data.pooled(probs, sel)
        ratio = _data.ratio_levels(mean, int(sel.sum()) if sel is not None else seq)
        suffix = "" if sel is None else "-ns"
        blobs += [_blob("thumbs" + suffix, _data.pack(_data.log_levels(mx))),
                  _blob("thumbs-ratio" + suffix, _data.pack(ratio))]
        thumb_meta[name] = t
    diff_meta = None
    if compare is not None:
        if tuple(compare.tokens) != tuple(record.tokens) or not np.array_equal(compare.token_ids, record.token_ids):
            raise InputError("compare record is for other tokens; both must come from the same text and tokenizer")
        if compare.probs.shape != record.probs.shape:
            raise InputError(f"compare record has shape {compare.probs.shape}, expected {record.probs.shape}")
        cprobs, _, _ = select(compare, layers, heads)
        diff = cprobs.astype(np.float32) - probs.astype(np.float32)
        dq, dscale, derr = _data.quantize_diff(diff)
        absdiff = np.abs(diff)
        head_max = absdiff.reshape(len(layers), len(heads), -1).max(axis=-1)
        gmax = float(head_max.max()) or 1.0
        dthumbs, _ = _data.thumbnails(absdiff / gmax)
        dthumbs_ns, _ = _data.thumbnails(absdiff / gmax, keep)
        blobs += [_blob("diff", _data.pack(dq)), _blob("diff-thumbs", _data.pack(dthumbs)),
                  _blob("diff-thumbs-ns", _data.pack(dthumbs_ns))]
        diff_meta = {
            "backend": compare.backend,
            "scale": [float(s) for s in dscale],  # decoded diff = (q - 128) / 127 * scale[layer]
            "max_abs": [float(v) for v in head_max.max(axis=1)],  # exact, from the float32 tensors
            "max_abs_head": [[float(v) for v in row] for row in head_max],
            "thumb_max": gmax,
            "max_error": derr,
        }
    display = [_data.display_token(tok, byte_level) for tok in record.tokens]
    if title is None:
        seg = np.asarray(record.segment_ids)
        words = " ‖ ".join(_plain_text([d for d, s, g in zip(display, special, seg) if not s and g == k], byte_level)
                           for k in sorted(set(seg.tolist())))
        title = f"{record.backend}: {words[:80]}" + ("…" if len(words) > 80 else "")
    meta = {
        "format": 1,
        "title": title,
        "backend": record.backend,
        "tokens": display,
        "raw_tokens": list(record.tokens),
        "special": [int(s) for s in special],
        "segments": [int(s) for s in np.asarray(record.segment_ids)],
        "layers": layers,
        "heads": heads,
        "model_layers": int(record.probs.shape[0]),
        "model_heads": int(record.probs.shape[1]),
        "seq": seq,
        "byte_level": byte_level,
        "hide_special": bool(hide_special),
        "quant": {"scheme": "uint8", "scale": _data.QSCALE, "bound": _data.QMAX_ERROR, "max_error": qerr},
        "thumb": {**thumb_meta, "scale": thumb_scale or ("uniform" if seq > LONG else "absolute"),
                  "log_decades": _data.LOG_DECADES, "octave_levels": _data.OCTAVE_LEVELS,
                  "ratio_span": _data.RATIO_SPAN},
        "diff": diff_meta,
    }
    page = _asset("viewer.html")
    page = page.replace("/*EK_STYLE*/", _asset("viewer.css"))
    page = page.replace("/*EK_SCRIPT*/", _asset("viewer.js"))
    page = page.replace("EK_TITLE", html.escape(title))
    data = f'<script type="application/json" id="ek-meta">{_script_json(meta)}</script>\n' + "".join(blobs)
    head, tail = page.split("<!--EK_DATA-->")
    return head + data + tail  # data spliced last: nothing in it is ever searched for markers


def decode_page(page: str) -> dict:
    """What a page holds, decoded as its script decodes it (for tests and notebooks).

    Returns:
        ``{"meta": dict, "probs": float32 [L, H, seq, seq], "diff": float32 ... or None}``.
    """
    import re

    def blob(name: str) -> str:
        m = re.search(rf'<script type="application/[a-z-]+" id="ek-{name}">(.*?)</script>', page, re.S)
        if m is None:
            raise InputError(f"page has no {name} data")
        return m.group(1)

    meta = json.loads(blob("meta"))  # JSON reads the escaped "<\/" as "</"
    shape = (len(meta["layers"]), len(meta["heads"]), meta["seq"], meta["seq"])
    probs = _data.dequantize(_data.unpack(blob("probs")).reshape(shape))
    diff = None
    if meta["diff"] is not None:
        diff = _data.dequantize_diff(_data.unpack(blob("diff")).reshape(shape), meta["diff"]["scale"])
    return {"meta": meta, "probs": probs, "diff": diff}
