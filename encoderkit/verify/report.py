"""report.md of a conversion: per format its size, time, peak memory, export facts (fused
operators, int8 calibration) and the gate's figures against their bounds."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .compare import head_check
from .gate import RANDOM_WEIGHT_INT8, THRESHOLDS


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
                lines += _parity_rows(backend, res, spec["heads"])
        if entry.get("not_validated"):
            lines += [""] + [f"- **not validated**: {b} ({why})" for b, why in entry["not_validated"].items()]
        lines.append("")
    lines.append("Probe inputs: 8 masked sentences of mixed length (padded together) and one sequence "
                 "at the model's maximum length (and, for segment-typed models, 3 text pairs).")
    return "\n".join(lines) + "\n"


def _parity_rows(backend: str, res: dict[str, Any], heads: list[str]) -> list[str]:
    rows = []
    if res["kind"] == "fp32":
        rows.append(f"| {backend} | max abs diff, hidden states | {res['max_abs_diff_hidden']:.2e} | {res['atol']:g} |")
        for check, value in res.get("max_abs_diff_heads", {}).items():
            rows.append(f"| {backend} | max abs diff, {check} | {value:.2e} | {res['atol']:g} |")
    else:
        for k, name in THRESHOLDS.items():
            if k in res:
                rows.append(f"| {backend} | {name} | {res[k]:.4f} | ≥ {res['thresholds'][k]} |")
        for k, head in (("label_agreement", "classification"), ("tag_agreement", "token-classification"),
                        ("span_agreement", "question-answering")):
            if k in res:
                rows.append(f"| {backend} | {head} {k.replace('_', ' ')} | {res[k]:.4f} | (reported) |")
        if res.get("variant") == "int8":
            ref = ", ".join(f"{k} {v:.4f}" for k, v in RANDOM_WEIGHT_INT8.items())
            rows.append(f"| {backend} | same checks, random-weight roberta-large | {ref} | "
                        "(noise floor, for comparison) |")
    if res.get("last_layer_only"):
        given = " and ".join(["last hidden state", *(head_check(h) for h in heads)])
        rows.append(f"| {backend} | outputs | {given} only | inner layers and attentions: not provided |")
    return rows


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
