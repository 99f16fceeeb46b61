"""The parity matrix: every backend of a converted directory against the torch reference.

``convert`` validates each export on the last hidden state and the mask logits. The matrix is the
wider check a release gates on (and tests reuse): for every backend the directory holds, on the
same probe texts,

- last hidden states, mask logits (fp32: max |diff|; quantized: fill-mask top-1 agreement and
  top-5 overlap),
- embeddings for every pooling (``tasks.embed.POOLINGS``) at several layers, through the backend's
  own ``hidden_layer`` (the path ``embed`` takes; fp32: max |diff|; quantized: min cosine),
- attention probabilities (fp32: max |diff|; quantized: reported, no bound),
- classification logits when the model has a classification head (fp32: max |diff|; quantized:
  label agreement, reported); otherwise that column is skipped with the reason.

Each cell carries its metric, value, bound and pass/fail; bounds come from the backend's row in
``registry.BACKENDS`` (``Tolerance.atol`` for fp32, the accuracy thresholds for quantized
backends), never from here. A NaN or inf value fails its cell, bounded or not.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .batching import pad_batch
from .errors import InputError
from .registry import BACKENDS, REFERENCE
from .tasks.embed import POOLINGS, pool

ATTENTION_BATCHES = ("short", "pair")  # the max-length batch's attentions (L x H x 512^2) are skipped


@dataclass(frozen=True)
class Cell:
    """One comparison of one backend with the reference.

    ``op`` is ``"<="`` (value must not exceed bound), ``">="`` (must reach it) or ``""`` (reported,
    no bound: it passes when finite).
    """

    backend: str
    check: str  # e.g. "hidden states", "mask logits", "embed mean L3", "attentions"
    metric: str  # "max_abs_diff", "top1", "top5", "min_cosine", "label_agreement"
    value: float
    bound: float | None
    op: str
    passed: bool
    where: str = ""

    def describe(self) -> str:
        """One line: ``onnx-int8 embed cls L1: min_cosine 0.951 < 0.98``."""
        if self.op:
            rel = {"<=": ">", ">=": "<"}[self.op] if not self.passed else self.op
            s = f"{self.backend} {self.check}: {self.metric} {self.value:.4g} {rel} {self.bound:g}"
        else:
            s = f"{self.backend} {self.check}: {self.metric} {self.value:.4g} (reported)"
        return s + (f" at {self.where}" if self.where and not self.passed else "")


def _cell(backend: str, check: str, metric: str, value: float, bound: float | None, op: str,
          where: str = "") -> Cell:
    value = float(value)
    ok = math.isfinite(value)
    if ok and op == "<=":
        ok = value <= bound
    elif ok and op == ">=":
        ok = value >= bound
    return Cell(backend, check, metric, value, bound, op, ok, where)


@dataclass(frozen=True)
class ParityMatrix:
    """The cells of every backend, plus what was probed and what was skipped (and why)."""

    model: str
    reference: str
    backends: tuple[str, ...]
    layers: tuple[int, ...]
    poolings: tuple[str, ...]
    probes: dict[str, Any]
    cells: tuple[Cell, ...]
    skipped: dict[str, str] = field(default_factory=dict)  # check -> reason

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cells)

    def failures(self) -> list[Cell]:
        return [c for c in self.cells if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        # JSON has no NaN: a non-finite value is written as its string ("nan", "inf")
        for c in d["cells"]:
            if not math.isfinite(c["value"]):
                c["value"] = str(c["value"])
        return d

    def to_markdown(self) -> str:
        """A backend-by-check table; each cell lists its metrics as ``value op bound`` and ✓/✗."""
        checks = list(dict.fromkeys(c.check for c in self.cells))
        by = {(c.check, c.backend): [] for c in self.cells}
        for c in self.cells:
            by[(c.check, c.backend)].append(c)
        lines = [f"# Parity matrix: `{self.model}`", "",
                 f"Every backend against `{self.reference}` on {self.probes['texts']} probe texts "
                 f"({self.probes['description']}). Result: **{'PASS' if self.passed else 'FAIL'}** "
                 f"({len(self.cells) - len(self.failures())}/{len(self.cells)} cells pass).", "",
                 "| check | " + " | ".join(self.backends) + " |",
                 "|---|" + "---|" * len(self.backends)]
        for check in checks:
            row = []
            for b in self.backends:
                cells = by.get((check, b), [])
                row.append("<br>".join(_md_cell(c) for c in cells) or "—")
            lines.append(f"| {check} | " + " | ".join(row) + " |")
        lines.append("")
        lines.append("Bounds are each backend's row in `encoderkit/registry.py`: fp32 backends max |diff| ≤ atol; "
                     "quantized backends fill-mask top-1/top-5 agreement and min cosine ≥ their thresholds; "
                     "cells without a bound are reported (they fail only when not finite).")
        for check, reason in self.skipped.items():
            lines.append(f"\nSkipped: {check} — {reason}.")
        if self.failures():
            lines += ["", "## Failures", ""] + [f"- {c.describe()}" for c in self.failures()]
        return "\n".join(lines) + "\n"


def _md_cell(c: Cell) -> str:
    mark = "✓" if c.passed else "✗"
    op = {"<=": "≤", ">=": "≥"}.get(c.op)
    bound = f" {op} {c.bound:g}" if op else ""
    value = f"{c.value:.3g}" if c.metric == "max_abs_diff" else f"{c.value:.4f}"
    return f"{c.metric} {value}{bound} {mark}"


def write_markdown(matrix: ParityMatrix, path: str | Path) -> Path:
    """Write ``parity.md``. Returns the path."""
    path = Path(path)
    path.write_text(matrix.to_markdown())
    return path


def write_json(matrix: ParityMatrix, path: str | Path) -> Path:
    """Write ``parity.json`` (the matrix as data; non-finite values as strings). Returns the path."""
    path = Path(path)
    path.write_text(json.dumps(matrix.to_dict(), indent=2) + "\n")
    return path


def default_layers(num_layers: int) -> tuple[int, ...]:
    """Embeddings output, first layer, middle and last: where a mapping bug shows first."""
    return tuple(sorted({0, 1, num_layers // 2, num_layers}))


def probe_texts(mask_token: str, n: int = 8) -> list[str]:
    """Masked corpus sentences of mixed length (one mask each, two in every third)."""
    from .tokenization import corpus_lines

    out = []
    for j, line in enumerate(corpus_lines()[:n]):
        words = line.split()
        words[len(words) // 2] = mask_token
        if j % 3 == 0:
            words[1] = mask_token
        out.append(" ".join(words))
    return out


@dataclass
class _Batch:
    name: str
    ids: np.ndarray
    mask: np.ndarray
    types: np.ndarray | None
    rows: np.ndarray  # (row, position) of every mask token
    # reference answers, filled once
    hidden: np.ndarray | None = None
    logits: np.ndarray | None = None
    layers: dict[int, np.ndarray] = field(default_factory=dict)
    attentions: tuple[np.ndarray, ...] | None = None
    class_logits: np.ndarray | None = None


def _batches(ref, texts: Sequence[str]) -> list[_Batch]:
    """short (the texts padded together), long (one text at the model's maximum length, padded with a
    short one), and pair (text pairs with token types) for segment-typed architectures."""
    from .tokenization import corpus_lines

    tok, spec = ref.tokenizer, ref.spec
    ids_short = tok.encode(list(texts), truncate=True)
    long_text = f"{tok.mask_token} " + " ".join(corpus_lines())
    while len(tok.encode_plain(long_text)) < tok.max_length:
        long_text += " " + long_text
    (ids_long,) = tok.encode([long_text], truncate=True)
    raw = [("short", ids_short, None), ("long", [ids_long, ids_short[0]], None)]
    if spec.architecture.segment_types:
        lines = corpus_lines()[:6]
        enc = tok.encode_pairs(lines[:3], lines[3:6])
        raw.append(("pair", [e[0] for e in enc], [e[1] for e in enc]))
    out = []
    for name, ids_list, type_list in raw:
        ids, mask = pad_batch(ids_list, spec.pad_token_id)
        types = None
        if type_list is not None:
            types = np.zeros_like(ids)
            for r, t in enumerate(type_list):
                types[r, : len(t)] = t
        out.append(_Batch(name, ids, mask, types, np.argwhere(ids == spec.mask_token_id)))
    return out


def _run(rt, b: _Batch, layers: Sequence[int], with_head: bool, with_cls: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    last_only = BACKENDS[rt.name].last_layer_only if rt.name in BACKENDS else False
    if last_only:  # the registry row says it gives the last hidden state only (e.g. CTranslate2)
        layers = [x for x in layers if x == rt.spec.num_layers]
    att = b.name in ATTENTION_BATCHES and not last_only
    fwd = rt.forward(b.ids, b.mask, token_type_ids=b.types, output_attentions=att)
    out["hidden"] = fwd.last_hidden_state
    out["attentions"] = fwd.attentions if att else None
    out["logits"] = rt.mask_logits(b.ids, b.mask, b.rows, token_type_ids=b.types) \
        if with_head and len(b.rows) else None
    out["layers"] = {layer: rt.hidden_layer(b.ids, b.mask, layer, token_type_ids=b.types) for layer in layers}
    out["class_logits"] = rt.classify_logits(b.ids, b.mask, b.types) if with_cls else None
    return out


class _Worst:
    """The largest value seen of one (check, metric), with where it was."""

    def __init__(self) -> None:
        self.value, self.where = 0.0, ""

    def add(self, d: np.ndarray, where) -> None:
        if d.size == 0:
            return
        bad = ~np.isfinite(d)
        if bad.any():
            idx = np.unravel_index(np.argmax(bad), d.shape)
            self.value, self.where = float("nan"), where(idx) + " (non-finite)"
            return
        idx = np.unravel_index(np.argmax(d), d.shape)
        if not math.isnan(self.value) and d[idx] >= self.value:
            self.value, self.where = float(d[idx]), where(idx)


class _Lowest:
    """The smallest value (cosine, agreement) seen, NaN sticking."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, xs) -> None:
        self.values += [float(x) for x in np.ravel(xs)]

    @property
    def min(self) -> float:
        v = np.asarray(self.values, dtype=np.float64)
        return float("nan") if v.size == 0 or not np.isfinite(v).all() else float(v.min())

    @property
    def mean(self) -> float:
        v = np.asarray(self.values, dtype=np.float64)
        return float("nan") if v.size == 0 or not np.isfinite(v).all() else float(v.mean())


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sum(a * b, -1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30)


def _compare(name: str, ref_out: list[dict], cand_out: list[dict], batches: list[_Batch],
             layers: Sequence[int], poolings: Sequence[str]) -> list[Cell]:
    info = BACKENDS[name]
    tol = info.tolerance
    cells: list[Cell] = []
    fp32 = not tol.quantized
    keys = ["hidden states", "mask logits", *[f"embed {p} L{layer}" for p in poolings for layer in layers],
            "attentions", "classification logits"]
    worst = {k: _Worst() for k in keys}
    low = {k: _Lowest() for k in keys}
    top1, top5 = _Lowest(), _Lowest()
    seen: set = set()  # the layers and attentions this backend gave
    for b, r, c in zip(batches, ref_out, cand_out):
        real = b.mask.astype(bool)
        d = np.where(real[:, :, None], np.abs(c["hidden"] - r["hidden"]), 0.0)
        worst["hidden states"].add(d, lambda i, b=b: f"batch {b.name}, row {i[0]}, position {i[1]}")
        low["hidden states"].add(_cosine(c["hidden"], r["hidden"])[real])
        if r["logits"] is not None:
            worst["mask logits"].add(np.abs(c["logits"] - r["logits"]),
                                     lambda i, b=b: f"batch {b.name}, mask {tuple(int(x) for x in b.rows[i[0]])}, token {i[1]}")
            for x, y in zip(r["logits"], c["logits"]):
                tx, ty = np.argsort(-x)[:5], np.argsort(-y)[:5]
                top1.add(float(tx[0] == ty[0]) if np.isfinite(y).all() else float("nan"))
                top5.add(len(set(tx) & set(ty)) / 5 if np.isfinite(y).all() else float("nan"))
        for layer in layers:
            if layer not in c["layers"]:  # a last-layer-only backend: not compared, listed as skipped
                continue
            seen.add(layer)
            for p in poolings:
                er, ec = pool(r["layers"][layer], b.mask, p), pool(c["layers"][layer], b.mask, p)
                k = f"embed {p} L{layer}"
                worst[k].add(np.abs(ec - er), lambda i, b=b: f"batch {b.name}, row {i[0]}, dim {i[1]}")
                low[k].add(_cosine(ec, er))
        if r["attentions"] is not None and c["attentions"] is not None:
            seen.add("attentions")
            pair = (real[:, None, :, None] & real[:, None, None, :])
            for layer, (ra, ca) in enumerate(zip(r["attentions"], c["attentions"])):
                worst["attentions"].add(np.where(pair, np.abs(ca - ra), 0.0),
                                        lambda i, b=b, layer=layer: f"batch {b.name}, layer {layer}, row {i[0]}, "
                                                                    f"head {i[1]}, query {i[2]}, key {i[3]}")
        if r["class_logits"] is not None:
            worst["classification logits"].add(np.abs(c["class_logits"] - r["class_logits"]),
                                               lambda i, b=b: f"batch {b.name}, row {i[0]}, label {i[1]}")
            low["classification logits"].add(np.argmax(c["class_logits"], 1) == np.argmax(r["class_logits"], 1))
    has_logits = any(r["logits"] is not None for r in ref_out)
    has_att = any(r["attentions"] is not None for r in ref_out)
    has_cls = any(r["class_logits"] is not None for r in ref_out)
    for k in keys:
        if (k == "mask logits" and not has_logits) or (k == "attentions" and not has_att) or \
                (k == "classification logits" and not has_cls):
            continue
        if (k == "attentions" and k not in seen) or \
                (k.startswith("embed ") and int(k.rsplit("L", 1)[1]) not in seen):
            continue  # the backend cannot give it (registry: last_layer_only); see ParityMatrix.skipped
        if fp32:
            cells.append(_cell(name, k, "max_abs_diff", worst[k].value, tol.atol, "<=", worst[k].where))
        elif k == "mask logits":
            th = tol.thresholds()
            cells.append(_cell(name, k, "top1", top1.mean, th.get("top1"), ">=" if "top1" in th else ""))
            cells.append(_cell(name, k, "top5", top5.mean, th.get("top5"), ">=" if "top5" in th else ""))
        elif k.startswith("embed "):
            th = tol.thresholds()
            cells.append(_cell(name, k, "min_cosine", low[k].min, th.get("cosine"), ">=" if "cosine" in th else ""))
        elif k == "hidden states":  # per-token cosine: reported (the bound is on pooled embeddings)
            cells.append(_cell(name, k, "min_cosine", low[k].min, None, ""))
        elif k == "attentions":
            cells.append(_cell(name, k, "max_abs_diff", worst[k].value, None, "", worst[k].where))
        else:
            cells.append(_cell(name, k, "label_agreement", low[k].mean, None, ""))
    return cells


def parity_matrix(converted: str | Path, *, backends: Sequence[str] | None = None,
                  layers: Sequence[int] | None = None, texts: Sequence[str] | None = None,
                  progress=None) -> ParityMatrix:
    """Compare every backend of a `convert` output with the torch reference.

    Args:
        converted: an ``encoderkit convert`` output directory (it must hold safetensors: the
            reference runs on it).
        backends: which to compare (default: ``runtimes.available_backends(converted)`` minus
            the reference).
        layers: hidden layers for the embedding cells (default ``default_layers``).
        texts: probe texts (default ``probe_texts``: masked corpus sentences); a max-length text
            and, for segment-typed models, text pairs are always added.
        progress: optional ``callable(str)`` told which backend is being compared.
    Returns:
        The matrix (check ``.passed``; ``.failures()`` names backend, check and metric).
    Raises:
        InputError: a requested backend is not available in ``converted``.
        ArtifactError: the directory's manifest does not verify.
    """
    from .runtimes import available_backends, load

    path = Path(converted)
    avail = available_backends(path)
    if REFERENCE not in avail:
        raise InputError(f"{path}: no {BACKENDS[REFERENCE].fmt} export, so no {REFERENCE} reference "
                         f"(convert with --to {BACKENDS[REFERENCE].fmt} too)")
    names = [b for b in avail if b != REFERENCE] if backends is None else list(backends)
    missing = [b for b in names if b not in avail]
    if missing:
        raise InputError(f"{path} cannot run backend(s) {', '.join(missing)} here (available: {', '.join(avail)})")
    ref = load(path, REFERENCE)
    spec = ref.spec
    layers = tuple(default_layers(spec.num_layers) if layers is None else layers)
    texts = list(probe_texts(ref.tokenizer.mask_token) if texts is None else texts)
    batches = _batches(ref, texts)
    with_head, with_cls = spec.has_mlm_head, spec.has_classifier
    ref_out = [_run(ref, b, layers, with_head, with_cls) for b in batches]
    skipped = {}
    if not with_cls:
        skipped["classification logits"] = "the model has no classification head"
    if not with_head:
        skipped["mask logits"] = "the model has no MLM head"
    cells: list[Cell] = []
    for name in names:
        if progress:
            progress(f"parity: {name}")
        rt = load(path, name)
        if BACKENDS[name].last_layer_only:
            skipped[f"{name}: inner layers and attentions"] = "the backend gives the last layer only (registry row)"
        cand_out = [_run(rt, b, layers, with_head, with_cls) for b in batches]
        cells += _compare(name, ref_out, cand_out, batches, layers, POOLINGS)
        del rt, cand_out
    probes = {"texts": len(texts) + 1 + (3 if spec.architecture.segment_types else 0),
              "batches": {b.name: list(b.ids.shape) for b in batches},
              "attention_batches": [b.name for b in batches if b.name in ATTENTION_BATCHES],
              "description": f"{len(texts)} masked sentences padded together, one at the maximum length "
                             f"({ref.tokenizer.max_length} tokens)"
                             + (", 3 text pairs with token types" if spec.architecture.segment_types else "")
                             + "; attentions on the short"
                             + (" and pair batches" if spec.architecture.segment_types else " batch")}
    return ParityMatrix(str(converted), REFERENCE, tuple(names), layers, tuple(POOLINGS), probes, tuple(cells),
                        skipped)


__all__ = ["Cell", "ParityMatrix", "default_layers", "parity_matrix", "probe_texts", "write_json",
           "write_markdown"]
