"""The parity matrix: every backend of a converted directory against the torch reference.

``convert`` gates each export on a few checks (``verify.gate``). The matrix is the wider check a
release gates on (and tests reuse): for every backend the directory holds, on the same probes
(``verify.probes``),

- last hidden states and every head's logits (fp32: max |diff|; quantized: top-1 agreement and
  top-5 overlap of the masked-LM head, label / tag / span agreement of the others, reported),
- embeddings for every pooling (``tasks.kernels.POOLINGS``) at several layers, through the
  backend's own ``hidden_layer`` (the path ``embed`` takes; fp32: max |diff|; quantized: min cosine),
- attention probabilities (fp32: max |diff|; quantized: reported, no bound).

Each cell (``verify.compare.Cell``) carries its metric, value, bound and pass/fail; bounds come
from the backend's catalog row (``Tolerance.atol`` for fp32, the accuracy thresholds for quantized
backends), never from here. A NaN or inf value fails its cell, bounded or not.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..backends.catalog import BACKENDS, REFERENCE
from ..core.errors import InputError
from ..core.heads import HEADS
from ..tasks.kernels import POOLINGS
from .compare import ATTENTION_BATCHES, Cell, compare, head_check, make_cell, run_probes
from .probes import describe, probe_batches, probe_texts

_cell = make_cell  # the name tests and earlier callers used


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
        lines.append("Bounds are each backend's catalog row (`encoderkit/backends/<name>/__init__.py`): fp32 backends "
                     "max |diff| ≤ atol; "
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


def parity_matrix(converted: str | Path, *, backends: Sequence[str] | None = None,
                  layers: Sequence[int] | None = None, texts: Sequence[str] | None = None,
                  progress=None, load_options: dict[str, Any] | None = None) -> ParityMatrix:
    """Compare every backend of a `convert` output with the torch reference.

    Args:
        converted: an ``encoderkit convert`` output directory (it must hold safetensors: the
            reference runs on it).
        backends: which to compare (default: ``backends.loading.available_backends(converted)``
            minus the reference, and minus pickle backends unless ``load_options`` allows pickles).
        layers: hidden layers for the embedding cells (default ``default_layers``).
        texts: probe texts (default ``probes.probe_texts``: masked corpus sentences); a max-length
            text and, for segment-typed models, text pairs are always added.
        progress: optional ``callable(str)`` told which backend is being compared.
        load_options: options for loading each backend (e.g. ``allow_pickle``).
    Returns:
        The matrix (check ``.passed``; ``.failures()`` names backend, check and metric).
    Raises:
        InputError: a requested backend is not available in ``converted``.
        ArtifactError: the directory's manifest does not verify.
    """
    from ..backends.loading import available_backends, load

    load_options = dict(load_options or {})
    path = Path(converted)
    avail = available_backends(path)
    if REFERENCE not in avail:
        raise InputError(f"{path}: no {BACKENDS[REFERENCE].fmt} export, so no {REFERENCE} reference "
                         f"(convert with --to {BACKENDS[REFERENCE].fmt} too)")
    if backends is None:
        names = [b for b in avail if b != REFERENCE and (not BACKENDS[b].pickle or load_options.get("allow_pickle"))]
    else:
        names = list(backends)
    missing = [b for b in names if b not in avail]
    if missing:
        raise InputError(f"{path} cannot run backend(s) {', '.join(missing)} here (available: {', '.join(avail)})")
    ref = load(path, REFERENCE)
    spec = ref.spec
    layers = tuple(default_layers(spec.num_layers) if layers is None else layers)
    texts = list(probe_texts(ref.tokenizer.mask_token) if texts is None else texts)
    batches = probe_batches(ref.tokenizer, spec.pad_token_id, spec.mask_token_id,
                            segment_types=spec.architecture.segment_types, texts=texts)
    ref_out = run_probes(ref, batches, layers=layers, attentions=True)
    skipped = {head_check(h): f"the model has no {h} head" for h in HEADS if not spec.has_head(h)}
    cells: list[Cell] = []
    for name in names:
        if progress:
            progress(f"parity: {name}")
        info = BACKENDS[name]
        rt = load(path, name, **({k: v for k, v in load_options.items() if k != "allow_pickle"}
                                 | ({"allow_pickle": True} if info.pickle else {})))
        if info.last_layer_only:
            skipped[f"{name}: inner layers and attentions"] = "the backend gives the last layer only (catalog row)"
        cand_out = run_probes(rt, batches, layers=layers, attentions=True, last_layer_only=info.last_layer_only)
        cells += compare(name, info.tolerance, ref_out, cand_out, batches, layers=layers, poolings=POOLINGS)
        del rt, cand_out
    att = [b.name for b in batches if b.name in ATTENTION_BATCHES]
    probes = {"texts": len(texts) + 1 + (3 if spec.architecture.segment_types else 0),
              "batches": {b.name: list(b.ids.shape) for b in batches},
              "attention_batches": att,
              "description": describe(len(texts), ref.tokenizer.max_length, spec.architecture.segment_types, att)}
    return ParityMatrix(str(converted), REFERENCE, tuple(names), layers, tuple(POOLINGS), probes, tuple(cells),
                        skipped)


__all__ = ["Cell", "ParityMatrix", "default_layers", "parity_matrix", "probe_texts", "write_json",
           "write_markdown"]
