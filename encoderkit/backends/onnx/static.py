"""Static int8 for the ONNX encoder: calibration, QDQ quantization, and the sensitivity step.

``quantize_static_int8`` (used by ``converters/onnx.py`` with ``--int8-mode static``):

1. Calibration: the texts the package ships (``corpus.txt`` and ``workloads/*.txt``), tokenized by
   the model's own tokenizer, cut in batches of varied size (1 to 16 texts) and length (the long
   documents reach the model's maximum), fed to ONNX Runtime's calibrator through a
   ``CalibrationDataReader`` with a progress bar. One text in five is held out: the sensitivity
   step judges on texts the calibration never saw.
2. ``quantize_static``: QDQ format, per-channel weights, MatMuls with a constant weight only (the
   attention score/context MatMuls of an unfused graph multiply two activations; quantizing them
   costs accuracy). The activation ranges are computed once (a calibration cache) and reused by
   every later quantization of the sensitivity step.
3. Sensitivity: ``onnxruntime.quantization.qdq_loss_debug`` collects, on calibration batches, each
   quantized MatMul's activation before and after its QuantizeLinear/DequantizeLinear pair and its
   weight before and after quantization; a node's error is the noise-to-signal ratio this adds to
   its product (activation error + weight error, as powers). Nodes are excluded (kept fp32) worst
   first, re-quantizing each time, until the held-out texts' mean-pooled embeddings have a min
   cosine >= ``target_cosine`` against the fp32 graph, or ``max_exclusions`` is reached. Every
   step's figures are returned for ``onnx_info.json`` and the report.

Measured choices (all-MiniLM-L6-v2 and random roberta, this repository's benchmarks/int8_modes.py)
are in the module constants' comments.
"""
from __future__ import annotations

import contextlib
import io
import logging
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ...core.batching import pad_batch
from ...core.progress import bar, say
from ...core.texts import WORKLOADS, corpus_lines, read_workload

BATCH_SIZES = (1, 2, 4, 8, 16, 3, 6, 12)  # cycled: varied batch shapes (and so varied padding)
HOLD_OUT_EVERY = 5  # one text in five judges the sensitivity step instead of calibrating
CALIBRATION_TEXTS = 240  # texts calibrated on (the rest of the shipped corpus is not needed)
SENSITIVITY_BATCHES = 8  # calibration batches the per-node errors are measured on
# Measured on all-MiniLM-L6-v2 (fused graph, 32 TEXTS of parity_tests/test_real_minilm.py, min
# cosine vs fp32 before exclusions): percentile 0.9885, entropy 0.9860, minmax 0.9843. u8
# activations with s8 weights: u8/u8 0.9870 but 0.74x the speed, s8/s8 0.66x, s8 + reduce_range
# 0.9834; the unfused graph 0.9814 and no faster. Reaching 0.995 on the held-out texts took 7 of 18
# MatMuls kept fp32 (the FFN MatMuls of layers 0-3), then the test texts' min cosine is 0.9962.
STATIC_DEFAULTS = {"method": "percentile", "max_exclusions": 8, "target_cosine": 0.995}


def shipped_texts(mask_token: str) -> list[str]:
    """corpus.txt and every workload, ``<mask>`` spelt the model's way, duplicates removed."""
    lines = list(corpus_lines())
    for path in sorted(WORKLOADS.glob("*.txt")):
        lines += read_workload(path.stem, mask_token)
    return list(dict.fromkeys(lines))


def calibration_feeds(tokenizer, pad_id: int, typed: bool, *, seed: int = 0
                      ) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """(calibration batches, held-out batches) as ONNX feeds; texts cut to the model's maximum."""
    texts = shipped_texts(tokenizer.mask_token)
    random.Random(seed).shuffle(texts)
    held = texts[::HOLD_OUT_EVERY]
    calib = [t for i, t in enumerate(texts) if i % HOLD_OUT_EVERY][:CALIBRATION_TEXTS]

    def batches(ts: list[str], sizes) -> list[dict[str, np.ndarray]]:
        ids = tokenizer.encode(ts, truncate=True)
        out, i, k = [], 0, 0
        while i < len(ids):
            n = sizes[k % len(sizes)]
            a, m = pad_batch(ids[i:i + n], pad_id)
            feeds = {"input_ids": a, "attention_mask": m}
            if typed:
                feeds["token_type_ids"] = np.zeros_like(a)
            out.append(feeds)
            i, k = i + n, k + 1
        return out

    return batches(calib, BATCH_SIZES), batches(held, (8,))


class FeedReader:
    """A ``CalibrationDataReader`` over prepared feeds, with a progress bar (ORT reads it once)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], desc: str = "int8 calibration"):
        self.feeds, self.desc = feeds, desc
        self.rewind()

    def rewind(self) -> None:
        self._bar = bar(total=len(self.feeds), desc=self.desc, unit="batch")
        self._it = iter(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        """ORT's strided calibration (``CalibStridedMinMax``) reads the feeds a slice at a time."""
        self._it = iter(self.feeds[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        if x is None:
            return None
        self._bar.update()
        if self._bar.n == len(self.feeds):
            self._bar.close()
        return x

    def __iter__(self):
        return self

    def __next__(self):
        x = self.get_next()
        if x is None:
            raise StopIteration
        return x

    def __len__(self) -> int:
        return len(self.feeds)


@contextlib.contextmanager
def _quiet_quantizer():
    """ORT's quantizer logs through the root logger ("Please consider pre-processing ...") and
    print()s its calibration steps ("Collecting tensor data and making histogram ..."). The CLI
    captures both anyway; this keeps them out of library callers' output too, passing the prints on
    at DEBUG level to the ``onnxruntime.quantization`` logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            yield
    finally:
        root.setLevel(level)
        if chatter.getvalue().strip():
            logging.getLogger("onnxruntime.quantization").debug(chatter.getvalue())


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _pooled(session, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    rows = []
    for f in feeds:
        (h,) = session.run(None, f)
        m = f["attention_mask"][:, :, None].astype(np.float32)
        e = (h * m).sum(1) / m.sum(1)
        rows.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    return np.concatenate(rows)


def _min_cosine(session, feeds, ref: np.ndarray) -> tuple[float, float]:
    cos = (_pooled(session, feeds) * ref).sum(1)
    return float(cos.min()), float(cos.mean())


def _quantized_matmuls(model) -> dict[str, tuple[str, str]]:
    """QDQ model: MatMul node name -> (its activation input's float name, its weight's float name)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for n in model.graph.node:
        if n.op_type != "MatMul":
            continue
        src = [producers.get(i) for i in n.input]
        if all(s is not None and s.op_type == "DequantizeLinear" for s in src):
            act_q = producers.get(src[0].input[0])
            act = act_q.input[0] if act_q is not None and act_q.op_type == "QuantizeLinear" else src[0].input[0]
            out[n.name] = (act, src[1].input[0])
    return out


def node_errors(fp32: Path, qdq: Path, feeds: list[dict[str, np.ndarray]], work: Path) -> dict[str, float]:
    """Noise-to-signal ratio each quantized MatMul adds to its product, on ``feeds``.

    From ``qdq_loss_debug``: the activation's SQNR across its QuantizeLinear/DequantizeLinear pair
    (pre vs post in the QDQ model) and the weight's SQNR (float vs dequantized); the product's
    error power is about the sum of the two ratios.
    """
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations,
                                                         compute_signal_to_quantization_noice_ratio,
                                                         compute_weight_error, create_activation_matching,
                                                         create_weight_matching,
                                                         modify_model_output_intermediate_tensors)

    model = onnx.load(str(qdq))
    pairs = _quantized_matmuls(model)
    augmented = work / "qdq.saving.onnx"
    modify_model_output_intermediate_tensors(str(qdq), str(augmented), op_types_for_saving=["QuantizeLinear",
                                                                                             "DequantizeLinear"])
    acts = collect_activations(str(augmented), FeedReader(feeds, "int8 sensitivity"))
    act_err = {k: compute_signal_to_quantization_noice_ratio(m["pre_qdq"], m["post_qdq"])
               for k, m in create_activation_matching(acts).items()}
    w_err = compute_weight_error(create_weight_matching(str(fp32), str(qdq)))
    augmented.unlink()

    def nsr(db: float | None) -> float:
        return 0.0 if db is None else 10 ** (-db / 10)

    return {name: nsr(act_err.get(a)) + nsr(w_err.get(w))
            for name, (a, w) in pairs.items()}


def quantize_static_int8(src: Path, dst: Path, *, tokenizer, pad_id: int, typed: bool,
                         method: str = STATIC_DEFAULTS["method"], activations: str = "u8", weights: str = "s8",
                         per_channel: bool = True, reduce_range: bool = False, preprocess: bool = True,
                         target_cosine: float = STATIC_DEFAULTS["target_cosine"],
                         max_exclusions: int = STATIC_DEFAULTS["max_exclusions"]) -> dict[str, Any]:
    """Static (QDQ) int8 of the encoder graph at ``src`` into ``dst``, with the sensitivity step.

    Returns:
        ``{"file", "method", "activations", "weights", "calibration", "quantized_matmuls",
        "excluded": [{"node", "error", "min_cosine_after"}], "ranking": [...],
        "min_cosine_vs_fp32", "target_cosine", "target_met"}``.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    types = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    calib, held = calibration_feeds(tokenizer, pad_id, typed)
    ntok = sum(int(f["attention_mask"].sum()) for f in calib)
    with tempfile.TemporaryDirectory(prefix=".int8-static-", dir=dst.parent) as tmp, _quiet_quantizer():
        work = Path(tmp)
        model_in = src
        if preprocess:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            model_in = work / "pre.onnx"
            # auto_merge: symbolic shape inference cannot otherwise reconcile the dynamo graph's
            # sequence dims ("Incomplete symbolic shape inference" on MiniLM's fused graph).
            quant_pre_process(str(src), str(model_in), auto_merge=True)
        cache = work / "calibration.json"
        # One batch per collection step: ORT's histogram calibrators stack a step's batches into one
        # array, which fails on batches of different shapes; stride 1 also bounds memory.
        extra = {"MatMulConstBOnly": True, "CalibStridedMinMax": 1, "OpTypesToExcludeOutputQuantization": ["MatMul"]}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999

        def quantize(exclude: list[str], out: Path, reader=None) -> None:
            quantize_static(str(model_in), str(out), reader, quant_format=QuantFormat.QDQ,
                            activation_type=types[activations], weight_type=types[weights],
                            per_channel=per_channel, reduce_range=reduce_range, op_types_to_quantize=["MatMul"],
                            calibrate_method=methods[method], nodes_to_exclude=exclude,
                            calibration_cache_path=str(cache), extra_options=dict(extra))

        say(f"int8 static: calibrating on {len(calib)} batches ({ntok} tokens), {method}")
        quantize([], dst, FeedReader(calib))
        ref = _pooled(_session(model_in), held)
        cos_min, cos_mean = _min_cosine(_session(dst), held, ref)
        steps = [{"excluded": 0, "min_cosine": cos_min, "mean_cosine": cos_mean}]
        excluded: list[dict[str, Any]] = []
        ranking: list[tuple[str, float]] = []
        if cos_min < target_cosine and max_exclusions > 0:
            errs = node_errors(model_in, dst, calib[:SENSITIVITY_BATCHES], work)
            ranking = sorted(errs.items(), key=lambda kv: -kv[1])
            for name, err in ranking[:max_exclusions]:
                excluded.append({"node": name, "error_nsr": err})
                quantize([e["node"] for e in excluded], dst)
                cos_min, cos_mean = _min_cosine(_session(dst), held, ref)
                excluded[-1] |= {"min_cosine_after": cos_min}
                steps.append({"excluded": len(excluded), "min_cosine": cos_min, "mean_cosine": cos_mean})
                if cos_min >= target_cosine:
                    break
        import onnx

        nq = len(_quantized_matmuls(onnx.load(str(dst), load_external_data=False)))
    return {"file": dst.name, "method": method, "activations": activations, "weights": weights,
            "per_channel": per_channel, "reduce_range": reduce_range,
            "calibration": {"batches": len(calib), "tokens": ntok,
                            "held_out_texts": sum(len(f["input_ids"]) for f in held)},
            "quantized_matmuls": nq, "excluded": excluded,
            "ranking": [{"node": n, "error_nsr": e} for n, e in ranking[:2 * max_exclusions]],
            "steps": steps, "min_cosine_vs_fp32": cos_min, "target_cosine": target_cosine,
            "target_met": cos_min >= target_cosine}

