"""Post-export validation against the torch reference, and the conversion report.

fp32 exports must match torch within an absolute tolerance on hidden states and mask logits, on
probe inputs that include padding and a sequence at the model's maximum length. Quantized exports
(int8, fp16) are judged by accuracy against fp32: fill-mask top-1 agreement, top-5 overlap and the
cosine similarity of mean-pooled embeddings, each with a configurable threshold.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .batching import pad_batch
from .errors import ParityError
from .options import option
from .registry import backend
from .runtimes import backend_class
from .runtimes.base import Runtime
from .tasks.embed import pool
from .tokenization import corpus_lines


# int8 on RANDOM weights, for comparison in every report: roberta-large seed 0, these probes, the
# default int8 (u8 weights from the fused graph), measured here with quant_accuracy on
# `encoderkit convert demo-out/roberta-large-random --to all --quantize int8`'s ONNX encoder.
# Random weights give near-uniform vocabulary distributions: top-k agreement there is a noise
# floor, so real-weight figures (e.g. all-MiniLM-L6-v2) are the ones that judge int8.
RANDOM_WEIGHT_INT8 = {"top1": 0.9286, "top5": 0.9143, "cosine": 0.9995}


def probe_batches(runtime: Runtime, n: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two padded batches: short masked sentences of mixed lengths, and one at maximum length."""
    tok, mask = runtime.tokenizer, runtime.tokenizer.mask_token
    lines = corpus_lines()[:n]
    short = []
    for j, line in enumerate(lines):  # one mask mid-sentence; every third sentence gets two
        words = line.split()
        words[len(words) // 2] = mask
        if j % 3 == 0:
            words[1] = mask
        short.append(" ".join(words))
    long_text = f"{mask} " + " ".join(corpus_lines())
    while len(tok.encode_plain(long_text)) < tok.max_length:
        long_text += " " + long_text
    ids_short = tok.encode(short)
    (ids_long,) = tok.encode([long_text], truncate=True)
    assert len(ids_long) == tok.max_length
    pad = runtime.spec.pad_token_id
    return [pad_batch(ids_short, pad), pad_batch([ids_long, ids_short[0]], pad)]


@dataclass(frozen=True)
class ValidationOptions:
    """Overrides of the quantized backends' accuracy thresholds (registry.BACKENDS' tolerance)."""

    min_top1: float | None = option(None, "lowest fill-mask top-1 agreement a quantized export may have",
                                    type=float)
    min_top5: float | None = option(None, "lowest fill-mask top-5 overlap a quantized export may have",
                                    type=float)
    min_cosine: float | None = option(None, "lowest embedding cosine a quantized export may have", type=float)

    def overrides(self) -> dict[str, float]:
        return {k: v for k, v in (("top1", self.min_top1), ("top5", self.min_top5),
                                  ("cosine", self.min_cosine)) if v is not None}


@dataclass(frozen=True)
class ProbeBatch:
    """One probe batch and the reference's answers on it (computed once per conversion)."""

    ids: np.ndarray
    mask: np.ndarray
    rows: np.ndarray  # (row, position) of every mask token
    hidden: np.ndarray  # reference last hidden state
    logits: np.ndarray | None  # reference logits at ``rows`` (None without an MLM head)
    # reference sequence-classification logits [batch, labels] (None without that head)
    class_logits: np.ndarray | None = None
    types: np.ndarray | None = None  # token types (a pair batch of a segment-typed model), else None


def pair_probe_batch(runtime: Runtime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Text pairs (ids, mask, token types), padded together: BERT's type-1 segment reaches the export."""
    lines = corpus_lines()[:6]
    enc = runtime.tokenizer.encode_pairs(lines[:3], lines[3:6])
    ids, mask = pad_batch([e[0] for e in enc], runtime.spec.pad_token_id)
    types = np.zeros_like(ids)
    for row, e in enumerate(enc):
        types[row, : len(e[1])] = e[1]
    return ids, mask, types


def reference_probes(ref: Runtime) -> list[ProbeBatch]:
    """Run the reference once on the probe batches; every validated backend reuses the result."""
    out = []
    batches = [(ids, mask, None) for ids, mask in probe_batches(ref)]
    if ref.spec.architecture.segment_types:
        batches.append(pair_probe_batch(ref))
    for ids, mask, types in batches:
        rows = np.argwhere(ids == ref.spec.mask_token_id)
        logits = ref.mask_logits(ids, mask, rows, token_type_ids=types) if ref.spec.has_mlm_head else None
        cls = ref.classify_logits(ids, mask, types) if ref.spec.has_classifier else None
        out.append(ProbeBatch(ids, mask, rows, ref.forward(ids, mask, token_type_ids=types).last_hidden_state,
                              logits, cls, types))
    return out


def fp32_parity(cand: Runtime, probes: list[ProbeBatch], atol: float) -> dict[str, Any]:
    """Max |diff| of hidden states and mask logits against the reference answers in ``probes``.

    A NaN or inf anywhere is a failure (NaN compares False with every bound, so it is checked
    explicitly).

    Raises:
        ParityError: naming the worst difference and where it is, when it exceeds ``atol``.
    """
    worst = {"hidden": (0.0, None), "logits": (0.0, None), "classification logits": (0.0, None)}

    def record(what: str, d: np.ndarray, where) -> None:
        if not np.isfinite(d).all():
            bad = np.unravel_index(np.argmax(~np.isfinite(d)), d.shape)
            raise ParityError(f"{cand.name} export gives non-finite {what} (NaN/inf) at {where(bad)}")
        idx = np.unravel_index(np.argmax(d), d.shape)
        if d[idx] >= worst[what][0]:
            worst[what] = (float(d[idx]), where(idx))

    for b, p in enumerate(probes):
        d = np.abs(cand.forward(p.ids, p.mask, token_type_ids=p.types).last_hidden_state - p.hidden) \
            * p.mask[:, :, None]
        record("hidden", d, lambda i, b=b: f"probe batch {b}, row {i[0]}, position {i[1]}")
        if p.logits is not None and len(p.rows):
            d = np.abs(cand.mask_logits(p.ids, p.mask, p.rows, token_type_ids=p.types) - p.logits)
            record("logits", d, lambda i, b=b, p=p: f"probe batch {b}, mask {tuple(p.rows[i[0]])}, token {i[1]}")
        if p.class_logits is not None:
            d = np.abs(cand.classify_logits(p.ids, p.mask, p.types) - p.class_logits)
            record("classification logits", d, lambda i, b=b: f"probe batch {b}, row {i[0]}, label {i[1]}")
    has_head = probes[0].logits is not None
    has_cls = probes[0].class_logits is not None
    result = {"kind": "fp32", "atol": atol, "max_abs_diff_hidden": worst["hidden"][0],
              "max_abs_diff_logits": worst["logits"][0] if has_head else None,
              "max_abs_diff_class_logits": worst["classification logits"][0] if has_cls else None}
    for what, (diff, where) in worst.items():
        if not diff <= atol:
            raise ParityError(f"{cand.name} export disagrees with torch: max |diff| of {what} "
                              f"{diff:.3g} > {atol:g} at {where}")
    return result


def quant_accuracy(cand: Runtime, probes: list[ProbeBatch]) -> dict[str, float]:
    """Top-1 agreement, top-5 overlap of mask predictions and mean-pooled cosine vs the reference."""
    top1, top5, cos, label_agree = [], [], [], []
    for p in probes:
        if p.logits is not None and len(p.rows):
            for a, b in zip(p.logits, cand.mask_logits(p.ids, p.mask, p.rows, token_type_ids=p.types)):
                ta, tb = np.argsort(-a)[:5], np.argsort(-b)[:5]
                top1.append(float(ta[0] == tb[0]))
                top5.append(len(set(ta) & set(tb)) / 5)
        if p.class_logits is not None:
            got = cand.classify_logits(p.ids, p.mask, p.types)
            label_agree += list((np.argmax(got, 1) == np.argmax(p.class_logits, 1)).astype(float))
        er = pool(p.hidden, p.mask, "mean")
        ec = pool(cand.forward(p.ids, p.mask, token_type_ids=p.types).last_hidden_state, p.mask, "mean")
        cos += list(np.sum(er * ec, 1) / (np.linalg.norm(er, axis=1) * np.linalg.norm(ec, axis=1)))
    out = {"cosine": float(np.min(cos)), "cosine_mean": float(np.mean(cos))}
    if top1:
        out |= {"top1": float(np.mean(top1)), "top5": float(np.mean(top5))}
    if label_agree:  # reported (not a threshold): label agreement of the classification head
        out["label_agreement"] = float(np.mean(label_agree))
    return out


def validate_export(directory: Path, name: str, probes: list[ProbeBatch],
                    options: ValidationOptions | None = None) -> dict[str, Any]:
    """Load ``directory`` on backend ``name`` and compare it with the reference answers in ``probes``,
    with the tolerance of its row in ``registry.BACKENDS``.

    Raises:
        ParityError: with the max difference (fp32) or the accuracy figures (quantized).
    """
    info = backend(name)
    cand = backend_class(name).load(directory)
    if info.quantized:
        thresholds = info.tolerance.thresholds() | (options.overrides() if options else {})
        acc = quant_accuracy(cand, probes)
        failed = [f"{k} {acc[k]:.3f} < {v}" for k, v in thresholds.items() if k in acc and not acc[k] >= v]
        if failed:
            raise ParityError(f"{name} export is below its accuracy thresholds: {'; '.join(failed)} "
                              "(change them with --min-top1/--min-top5/--min-cosine)")
        return {"kind": "quantized", "variant": info.variant, "thresholds": thresholds, **acc}
    return fp32_parity(cand, probes, info.tolerance.atol)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def render_report(report: dict[str, Any], root: Path) -> str:
    """report.md: sizes, export facts (e.g. fused operators), parity, time and peak memory."""
    spec = report["spec"]
    lines = ["# encoderkit conversion report", "",
             f"Source: `{report['model']}` — {spec['arch']}, {spec['num_layers']} layers, "
             f"hidden {spec['hidden_size']}, {spec['num_heads']} heads, vocab {spec['vocab_size']}, "
             f"heads: {', '.join(spec['heads']) or 'none'}", ""]
    for fmt, entry in report["formats"].items():
        lines += [f"## {fmt}", "", f"- size on disk: {_size(root / fmt) / 1e6:.1f} MB",
                  f"- time: {entry['seconds']:.1f} s (export {entry['export_seconds']:.1f} s)",
                  f"- peak RSS of the converting process so far: {entry['peak_rss_mb']:.0f} MB"]
        for key, value in entry["export"].items():
            if key == "files":
                continue
            lines.append(f"- {key.replace('_', ' ')}: {_fmt(value)}")
        if entry["parity"]:
            lines += ["", "| backend | check | result | bound |", "|---|---|---|---|"]
            for backend, res in entry["parity"].items():
                if res["kind"] == "fp32":
                    lines.append(f"| {backend} | max abs diff, hidden states | {res['max_abs_diff_hidden']:.2e} "
                                 f"| {res['atol']:g} |")
                    if res["max_abs_diff_logits"] is not None:
                        lines.append(f"| {backend} | max abs diff, mask logits | "
                                     f"{res['max_abs_diff_logits']:.2e} | {res['atol']:g} |")
                    if res.get("max_abs_diff_class_logits") is not None:
                        lines.append(f"| {backend} | max abs diff, classification logits | "
                                     f"{res['max_abs_diff_class_logits']:.2e} | {res['atol']:g} |")
                else:
                    for k in ("top1", "top5", "cosine"):
                        if k in res:
                            name = {"top1": "fill-mask top-1 agreement", "top5": "fill-mask top-5 overlap",
                                    "cosine": "min cosine, mean-pooled"}[k]
                            lines.append(f"| {backend} | {name} | {res[k]:.4f} | ≥ {res['thresholds'][k]} |")
                    if "label_agreement" in res:
                        lines.append(f"| {backend} | classification label agreement | "
                                     f"{res['label_agreement']:.4f} | (reported) |")
                    if res.get("variant") == "int8":
                        ref = ", ".join(f"{k} {v:.4f}" for k, v in RANDOM_WEIGHT_INT8.items())
                        lines.append(f"| {backend} | same checks, random-weight roberta-large | {ref} | "
                                     "(noise floor, for comparison) |")
        lines.append("")
    lines.append("Probe inputs: 8 masked sentences of mixed length (padded together) and one sequence "
                 "at the model's maximum length.")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
