"""The gate a conversion must pass: each export against the torch reference, with the tolerance
of its catalog row, before anything is renamed into place.

fp32 exports must match torch within an absolute tolerance on hidden states, every head's logits
and the mean-pooled embedding, on probes that include padding, a sequence at the model's maximum
length and (segment-typed models) text pairs. Quantized exports (int8, fp16) are judged by
accuracy against the reference: fill-mask top-1 agreement, top-5 overlap and the cosine of
mean-pooled embeddings, each with a threshold the user may override (``ValidationOptions``).
The comparisons themselves are ``verify.compare``'s, shared with the parity matrix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends.catalog import backend
from ..backends.loading import backend_class
from ..core.errors import InputError, ParityError
from ..core.options import option
from .compare import Answers, Cell, compare, head_check, run_probes
from .probes import ProbeBatch, probe_batches

# The metrics a quantized backend's thresholds bound, and the report's words for them.
THRESHOLDS = {"top1": "fill-mask top-1 agreement", "top5": "fill-mask top-5 overlap",
              "cosine": "min cosine, mean-pooled"}

# int8 on RANDOM weights, for comparison in every report: roberta-large seed 0, these probes, the
# default int8 (u8 weights from the fused graph), measured here with the gate's checks on
# `encoderkit convert demo-out/roberta-large-random --to all --quantize int8`'s ONNX encoder.
# Random weights give near-uniform vocabulary distributions: top-k agreement there is a noise
# floor, so real-weight figures (e.g. all-MiniLM-L6-v2) are the ones that judge int8.
RANDOM_WEIGHT_INT8 = {"top1": 0.9286, "top5": 0.9143, "cosine": 0.9995}


def _fraction(name: str):
    def check(value: float | None) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0.0 <= value <= 1.0:
            raise InputError(f"--{name.replace('_', '-')} takes a number from 0 to 1, got {value!r}")
        return float(value)
    return check


@dataclass(frozen=True)
class ValidationOptions:
    """Overrides of the quantized backends' accuracy thresholds (catalog rows' tolerance)."""

    min_top1: float | None = option(None, "lowest fill-mask top-1 agreement a quantized export may have (0-1)",
                                    type=float)
    min_top5: float | None = option(None, "lowest fill-mask top-5 overlap a quantized export may have (0-1)",
                                    type=float)
    min_cosine: float | None = option(None, "lowest embedding cosine a quantized export may have (0-1)",
                                      type=float)

    def __post_init__(self):  # refused before any export runs (a NaN bound would pass everything)
        for name in ("min_top1", "min_top5", "min_cosine"):
            _fraction(name)(getattr(self, name))

    def overrides(self) -> dict[str, float]:
        return {k: v for k, v in (("top1", self.min_top1), ("top5", self.min_top5),
                                  ("cosine", self.min_cosine)) if v is not None}


@dataclass(frozen=True)
class ReferenceProbes:
    """The probe batches and the reference's answers on them (computed once per conversion)."""

    batches: list[ProbeBatch]
    answers: list[Answers]
    layer: int  # the last layer: the gate's pooled-embedding check


def reference_probes(ref) -> ReferenceProbes:
    """Run the reference once on the probe batches; every validated backend reuses the result."""
    spec = ref.spec
    batches = probe_batches(ref.tokenizer, spec.pad_token_id, spec.mask_token_id,
                            segment_types=spec.architecture.segment_types)
    n = spec.num_layers
    return ReferenceProbes(batches, run_probes(ref, batches, layers=[n], attentions=False,
                                               layers_from_forward=True), n)


def check(name: str, cand, probes: ReferenceProbes, options: ValidationOptions | None = None) -> list[Cell]:
    """The gate's cells of runtime ``cand`` (backend ``name``)."""
    info = backend(name)
    answers = run_probes(cand, probes.batches, layers=[probes.layer], attentions=False,
                         last_layer_only=info.last_layer_only, layers_from_forward=True)
    return compare(name, info.tolerance, probes.answers, answers, probes.batches, layers=[probes.layer],
                   poolings=("mean",), thresholds=options.overrides() if options else None)


def summary(name: str, cells: list[Cell], options: ValidationOptions | None = None) -> dict[str, Any]:
    """The gate's figures as report.md and the convert report list them."""
    info = backend(name)
    by = {(c.check, c.metric): c.value for c in cells}
    scope = {"last_layer_only": True} if info.last_layer_only else {}
    if not info.quantized:
        heads = {c.check: c.value for c in cells if c.check.endswith(" logits")}
        return {"kind": "fp32", "atol": info.tolerance.atol,
                "max_abs_diff_hidden": by[("hidden states", "max_abs_diff")],
                "max_abs_diff_logits": heads.get(head_check("mlm")),
                "max_abs_diff_class_logits": heads.get(head_check("classification")),
                "max_abs_diff_heads": heads, **scope}
    out: dict[str, Any] = {"kind": "quantized", "variant": info.variant,
                           "thresholds": info.tolerance.thresholds() | (options.overrides() if options else {})}
    for c in cells:
        if c.check.startswith("embed "):
            out["cosine"] = c.value
        elif c.metric in ("top1", "top5", "label_agreement", "tag_agreement", "span_agreement"):
            out[c.metric] = c.value
    return out | scope


def validate_export(directory: Path, name: str, probes: ReferenceProbes,
                    options: ValidationOptions | None = None) -> dict[str, Any]:
    """Load ``directory`` on backend ``name`` and hold it to its tolerance against ``probes``.

    Returns:
        The figures (``summary``).
    Raises:
        ParityError: naming the backend, what failed, the value, the bound and where.
    """
    info = backend(name)
    cand = backend_class(name).load(directory, **({"allow_pickle": True} if info.pickle else {}))
    cells = check(name, cand, probes, options)
    failed = [c for c in cells if not c.passed]
    if failed:
        worst = failed[0]
        if info.quantized:
            raise ParityError(f"{name} export is below its accuracy thresholds: "
                              + "; ".join(c.describe().removeprefix(f"{name} ") for c in failed)
                              + " (change them with --min-top1/--min-top5/--min-cosine)")
        raise ParityError(f"{name} export disagrees with torch: max |diff| of {worst.check} {worst.value:.3g} "
                          f"> {worst.bound:g} at {worst.where or 'a non-finite value'}")
    return summary(name, cells, options)


# The benchmark measures pooled embeddings, not the hidden states the fp32 gate bounds with atol:
# an fp32 backend must keep each text's embedding direction (garbage reaches ~0.93 on a random model).
FP32_MIN_COSINE = 0.9999


def passes(name: str, figures: dict[str, Any]) -> bool | None:
    """Whether figures measured elsewhere (the benchmark's ``top1``/``top5``/``min_cosine`` against
    the reference of its run) meet backend ``name``'s thresholds. fp32 backends are held to
    ``FP32_MIN_COSINE`` (their fill-mask top-k may swap near-ties); figures that could not be
    compared fail; None: not a catalog backend."""
    from ..backends.catalog import BACKENDS

    info = BACKENDS.get(name)
    if info is None:
        return None
    if "error" in figures:
        return False
    if not info.quantized:
        cos = figures.get("min_cosine")
        return cos is None or (math.isfinite(cos) and cos >= FP32_MIN_COSINE)
    keys = {"top1": "top1", "top5": "top5", "cosine": "min_cosine"}
    return all(math.isfinite(figures[keys[k]]) and figures[keys[k]] >= v
               for k, v in info.tolerance.thresholds().items() if keys[k] in figures)
