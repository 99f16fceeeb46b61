"""Every comparison of a backend with the reference, written once: run the probe batches through a
runtime (``run_probes``), then turn its answers and the reference's into ``Cell``s (``compare``):
per check (hidden states, each head's logits, pooled embeddings at layers, attentions) a metric,
its value, the bound from the backend's tolerance and pass/fail. The convert gate asks for a few
checks, the parity matrix for all of them.

fp32 backends: max |diff| of everything, bounded by ``Tolerance.atol``. Quantized backends: top-1
agreement and top-5 overlap of vocabulary heads and min cosine of pooled embeddings, bounded by
their thresholds; per-token cosine, label / tag / span agreement and attention differences are
reported (a cell without a bound passes when its value is finite). A NaN or inf fails its cell.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core.contracts import Tolerance
from ..core.heads import EVERY, HEADS, MASKS, SPAN, VOCAB
from ..tasks.kernels import pool
from .metrics import Lowest, Worst, argmax_agreement, cosine, span_agreement, top_ids, topk_agreement
from .probes import ProbeBatch

ATTENTION_BATCHES = ("short", "pair")  # the max-length batch's attentions (L x H x 512^2) are skipped
# The check names of the two heads earlier reports used (parity.md, release notes read them).
_HEAD_CHECKS = {"mlm": "mask logits", "classification": "classification logits"}


def head_check(head: str) -> str:
    return _HEAD_CHECKS.get(head, f"{head} logits")


@dataclass(frozen=True)
class Cell:
    """One comparison of one backend with the reference.

    ``op`` is ``"<="`` (value must not exceed bound), ``">="`` (must reach it) or ``""`` (reported,
    no bound: it passes when finite).
    """

    backend: str
    check: str  # e.g. "hidden states", "mask logits", "embed mean L3", "attentions"
    metric: str  # "max_abs_diff", "top1", "top5", "min_cosine", "label_agreement", ...
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


def make_cell(backend: str, check: str, metric: str, value: float, bound: float | None, op: str,
              where: str = "") -> Cell:
    value = float(value)
    ok = math.isfinite(value)
    if ok and op == "<=":
        ok = value <= bound
    elif ok and op == ">=":
        ok = value >= bound
    return Cell(backend, check, metric, value, bound, op, ok, where)


@dataclass
class Answers:
    """One runtime's outputs on one probe batch."""

    hidden: np.ndarray
    heads: dict[str, np.ndarray | None] = field(default_factory=dict)
    layers: dict[int, np.ndarray] = field(default_factory=dict)
    attentions: tuple[np.ndarray, ...] | None = None


def run_probes(rt, batches: Sequence[ProbeBatch], *, layers: Sequence[int], attentions: bool,
               last_layer_only: bool = False, layers_from_forward: bool = False) -> list[Answers]:
    """Run every batch through ``rt``: last hidden state, every head the model carries at its rows,
    hidden states at ``layers`` (through ``hidden_layer``, the path ``embed`` takes, unless
    ``layers_from_forward``: the last layer from the forward pass) and attention probabilities.
    A last-layer-only backend is asked for the last layer only."""
    n = rt.spec.num_layers
    out = []
    for b in batches:
        want = [x for x in layers if x == n] if last_layer_only else list(layers)
        att = attentions and b.name in ATTENTION_BATCHES and not last_layer_only
        fwd = rt.forward(b.ids, b.mask, token_type_ids=b.types, output_attentions=att)
        a = Answers(fwd.last_hidden_state, attentions=fwd.attentions if att else None)
        for head in rt.spec.heads:
            needs_rows = HEADS[head].rows == MASKS
            a.heads[head] = None if needs_rows and not len(b.rows) else rt.head_logits(
                head, b.ids, b.mask, rows=b.rows if needs_rows else None, token_type_ids=b.types)
        for layer in want:
            a.layers[layer] = a.hidden if layers_from_forward and layer == n else \
                rt.hidden_layer(b.ids, b.mask, layer, token_type_ids=b.types)
        out.append(a)
    return out


def compare(name: str, tol: Tolerance, ref: Sequence[Answers], cand: Sequence[Answers],
            batches: Sequence[ProbeBatch], *, layers: Sequence[int], poolings: Sequence[str],
            thresholds: dict[str, float] | None = None) -> list[Cell]:
    """The cells of backend ``name`` (its tolerance ``tol``; ``thresholds`` override a quantized
    backend's) on every check both sides answered."""
    fp32 = not tol.quantized
    th = tol.thresholds() | (thresholds or {})
    heads = [h for h in (ref[0].heads if ref else {}) if any(r.heads.get(h) is not None for r in ref)]
    keys = ["hidden states", *(head_check(h) for h in heads),
            *[f"embed {p} L{layer}" for p in poolings for layer in layers], "attentions"]
    worst = {k: Worst() for k in keys}
    low = {k: Lowest() for k in keys}
    top1, top5 = Lowest(), Lowest()
    seen: set = set()
    for b, r, c in zip(batches, ref, cand):
        real = b.mask.astype(bool)
        worst["hidden states"].add(np.where(real[:, :, None], np.abs(c.hidden - r.hidden), 0.0),
                                   lambda i, b=b: f"batch {b.name}, row {i[0]}, position {i[1]}")
        low["hidden states"].add(cosine(c.hidden, r.hidden)[real])
        for head in heads:
            _compare_head(head, b, r.heads.get(head), c.heads.get(head), worst[head_check(head)],
                          low[head_check(head)], top1, top5)
        for layer in layers:
            if layer not in c.layers:  # a last-layer-only backend: not compared
                continue
            seen.add(layer)
            for p in poolings:
                er, ec = pool(r.layers[layer], b.mask, p), pool(c.layers[layer], b.mask, p)
                k = f"embed {p} L{layer}"
                worst[k].add(np.abs(ec - er), lambda i, b=b: f"batch {b.name}, row {i[0]}, dim {i[1]}")
                low[k].add(cosine(ec, er))
        if r.attentions is not None and c.attentions is not None:
            seen.add("attentions")
            pair = real[:, None, :, None] & real[:, None, None, :]
            for layer, (ra, ca) in enumerate(zip(r.attentions, c.attentions)):
                worst["attentions"].add(np.where(pair, np.abs(ca - ra), 0.0),
                                        lambda i, b=b, layer=layer: f"batch {b.name}, layer {layer}, row {i[0]}, "
                                                                    f"head {i[1]}, query {i[2]}, key {i[3]}")
    cells: list[Cell] = []
    for k in keys:
        if (k == "attentions" and k not in seen) or (k.startswith("embed ") and int(k.rsplit("L", 1)[1]) not in seen):
            continue  # the backend cannot give it (catalog: last_layer_only)
        if fp32:
            cells.append(make_cell(name, k, "max_abs_diff", worst[k].value, tol.atol, "<=", worst[k].where))
        elif k.startswith("embed "):
            cells.append(make_cell(name, k, "min_cosine", low[k].min, th.get("cosine"), ">=" if "cosine" in th else ""))
        elif k == "hidden states":  # per-token cosine: reported (the bound is on pooled embeddings)
            cells.append(make_cell(name, k, "min_cosine", low[k].min, None, ""))
        elif k == "attentions":
            cells.append(make_cell(name, k, "max_abs_diff", worst[k].value, None, "", worst[k].where))
        else:
            head = next(h for h in heads if head_check(h) == k)
            cells += _quantized_head_cells(name, head, k, low[k], top1, top5, th)
    return cells


def _compare_head(head: str, b: ProbeBatch, r: np.ndarray | None, c: np.ndarray | None, worst: Worst,
                  low: Lowest, top1: Lowest, top5: Lowest) -> None:
    if r is None or c is None:
        return
    info = HEADS[head]
    diff = np.abs(c - r)
    if info.rows == EVERY:
        diff = np.where(b.mask.astype(bool)[:, :, None], diff, 0.0)
        worst.add(diff, lambda i, b=b: f"batch {b.name}, row {i[0]}, position {i[1]}, output {i[2]}")
    elif info.rows == MASKS:
        worst.add(diff, lambda i, b=b: f"batch {b.name}, mask {tuple(int(x) for x in b.rows[i[0]])}, token {i[1]}")
    else:
        worst.add(diff, lambda i, b=b: f"batch {b.name}, row {i[0]}, label {i[1]}")
    if info.output == VOCAB:
        t1, t5 = topk_agreement(top_ids(r), top_ids(c))
        top1.add(t1)
        top5.add(t5)
    elif info.output == SPAN:
        low.add(span_agreement(r, c, b.mask))
    elif info.rows == EVERY:  # tags: every real token's label
        low.add(argmax_agreement(r, c)[b.mask.astype(bool)])
    else:
        low.add(argmax_agreement(r, c))


def _quantized_head_cells(name: str, head: str, check: str, agreement: Lowest, top1: Lowest, top5: Lowest,
                          th: dict[str, float]) -> list[Cell]:
    info = HEADS[head]
    if info.output == VOCAB:
        return [make_cell(name, check, "top1", top1.mean, th.get("top1"), ">=" if "top1" in th else ""),
                make_cell(name, check, "top5", top5.mean, th.get("top5"), ">=" if "top5" in th else "")]
    metric = "span_agreement" if info.output == SPAN else "tag_agreement" if info.rows == EVERY else "label_agreement"
    return [make_cell(name, check, metric, agreement.mean, None, "")]
