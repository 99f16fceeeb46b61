"""The calibrated int8 modes of the ONNX encoder: static (calibration, QDQ quantization, the
sensitivity step) and token (per-token activations, SmoothQuant factors calibrated here).

``quantize_token_int8`` (``export.py`` with ``--int8-mode token``, the default) is described at its
section below. ``quantize_static_int8`` (``export.py`` with ``--int8-mode static``):

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
from .layout import EXTERNAL_DATA_BYTES

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




# ----------------------------------------------------------------------------------------------
# --int8-mode token: per-token activations, smoothed, QKV included (no QDQ, no ORT quantizer)
# ----------------------------------------------------------------------------------------------
# Measured on all-MiniLM-L6-v2 (470 varied texts vs sentence-transformers, benchmarks/int8_search.py,
# torch fake-quant then the ONNX graph): with per-channel s8 weights everywhere, activations
# per tensor (what ORT's dynamic quantizer does) gave min cosine 0.948; per token symmetric (what
# CTranslate2 does) 0.970; per token asymmetric 0.989; per token asymmetric after smoothing the
# LayerNorm-fed inputs 0.994 (alpha 0.4: 0.993, 0.6: 0.995). Smoothing the Gelu-fed and
# attention-fed inputs added nothing; the attention output projection kept per tensor lost nothing
# (0.9945 vs 0.9941) and is cheaper. 7-bit weights (reduce_range) fell to 0.982.
TOKEN_ALPHA = 0.5  # SmoothQuant migration strength: s_j = max|x_j|^a / max|w_j|^(1-a)
TOKEN_OPSET = 21  # QuantizeLinear with block_size (a scale and zero point per token)
# Split of each column's zero-point correction into extra s8 weight rows: |entry| <= 64 keeps every
# u8 x s8 pair sum below 2^15 (255 * 64 * 2), the int16 limit of the non-VNNI x86 kernels.
TOKEN_CORRECTION_MAX = 64
_NORMS = ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization")
_ATTENTIONS = ("Attention", "MultiHeadAttention")


def _const_array(name: str, inits: dict, producers: dict) -> np.ndarray | None:
    """An initializer's value, or a Concat of initializers' (the fused Attention's packed QKV)."""
    from onnx import numpy_helper

    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = producers.get(name)
    if node is not None and node.op_type == "Concat" and all(i in inits for i in node.input):
        axis = next(a.i for a in node.attribute if a.name == "axis")
        return np.concatenate([numpy_helper.to_array(inits[i]) for i in node.input], axis)
    return None


def qkv_parts(node, w: np.ndarray) -> list[np.ndarray]:
    """A fused Attention's packed QKV weight ``w`` [hidden, q + k + v] split into its Q, K, V weights."""
    sizes = next((list(a.ints) for a in node.attribute if a.name == "qkv_hidden_sizes"), [w.shape[1] // 3] * 3)
    return np.split(w, np.cumsum(sizes)[:-1], axis=1)


def mha_from_attention(n, qkv: list[str], outputs: list[str], name: str):
    """A MultiHeadAttention over the projections ``qkv`` with the fused Attention ``n``'s bias,
    mask, attention bias and attributes."""
    from onnx import helper

    ins = list(n.input) + [""] * 6
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute
             if a.name in ("num_heads", "scale", "mask_filter_value", "unidirectional")}
    # MultiHeadAttention: query, key, value, bias, key_padding_mask, attention_bias
    mha = [*qkv, ins[2], ins[3], ins[5]]
    while mha[-1] == "":
        mha.pop()
    return helper.make_node("MultiHeadAttention", mha, outputs, name=name, domain="com.microsoft", **attrs)


def token_weights(w: np.ndarray, limit: int = TOKEN_CORRECTION_MAX) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-column symmetric s8 weights with the asymmetric activations' correction folded in.

    A token quantized as ``q = round(x / s) + z`` (u8, its own s and z) makes ``x @ W`` equal to
    ``s * ((q - z) @ Wq) * sw``. ``- z * colsum(Wq)`` is computed by the GEMM itself: R extra
    rows holding ``-colsum(Wq)`` split in pieces of at most ``limit``, multiplied by R extra
    input columns holding z. Exact, one GEMM, K grows by R (2-5 % here).

    Returns:
        (weights [K + R, N] int8, per-column scales [N] float32, R)
    """
    scale = np.abs(w).max(0) / 127
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int64)
    rest = -q.sum(0)
    rows = max(1, int(np.ceil(np.abs(rest).max() / limit)))
    extra = np.empty((rows, w.shape[1]), np.int64)
    for r in range(rows):  # spread evenly: every piece within +-limit
        extra[r] = np.trunc(rest / (rows - r))
        rest = rest - extra[r]
    assert not rest.any() and np.abs(extra).max() <= limit
    return np.concatenate([q, extra]).astype(np.int8), scale.astype(np.float32), rows


class _TokenRewrite:
    """Replaces a graph's constant-weight projections by per-token int8 ones (see quantize_token_int8)."""

    def __init__(self, model, absmax: dict[str, np.ndarray], alpha: float):
        self.model, self.absmax, self.alpha = model, absmax, alpha
        g = model.graph
        self.inits = {t.name: t for t in g.initializer}
        self.producers = {o: n for n in g.node for o in n.output}
        self.new_inits: list = []
        self.shared: dict[str, str] = {}
        self.counts = {"per-token smoothed": 0, "per-token": 0, "per-tensor": 0, "attention -> MultiHeadAttention": 0}

    def const(self, name: str, value, shared: bool = False) -> str:
        from onnx import numpy_helper

        if shared and name in self.shared:
            return self.shared[name]
        self.new_inits.append(numpy_helper.from_array(np.asarray(value), name))
        if shared:
            self.shared[name] = name
        return name

    def kind(self, x: str) -> str:
        p = self.producers.get(x)
        op = p.op_type if p is not None else None
        if op in _NORMS:
            return "per-token smoothed"
        return "per-tensor" if op in _ATTENTIONS else "per-token"

    def group(self, x: str, projections: list[tuple[np.ndarray, str]], tag: str) -> list:
        """Nodes computing every ``out = x @ W`` of ``projections`` from one quantized copy of x."""
        from onnx import helper

        kind = self.kind(x)
        self.counts[kind] += len(projections)
        nodes = []
        if kind == "per-tensor":  # DynamicQuantizeMatMul: u8 activations per tensor, s8 per-column weights
            for w, out in projections:
                scale = (np.abs(w).max(0) / 127).astype(np.float32)
                scale[scale == 0] = 1.0
                wq = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
                nodes.append(helper.make_node("DynamicQuantizeMatMul", [x, self.const(f"{out}_wq", wq),
                                              self.const(f"{out}_ws", scale)], [out], name=f"{out}_int8",
                                              domain="com.microsoft"))
            return nodes
        k = projections[0][0].shape[0]

        def node(op: str, inputs: list[str], **attrs) -> str:
            out = f"{tag}_{op}_{len(nodes)}"
            nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
            return out

        smooth = None
        if kind == "per-token smoothed":
            act = np.maximum(self.absmax[x], 1e-5)
            wmax = np.maximum(np.max([np.abs(w).max(1) for w, _ in projections], 0), 1e-5)
            smooth = np.maximum(act ** self.alpha / wmax ** (1 - self.alpha), 1e-5)
            # Powers of two: x / s and W * s are then exact in fp32, and a calibration that differs
            # in its last bits (another CPU, another thread count) gives the same graph.
            smooth = np.exp2(np.round(np.log2(smooth))).astype(np.float32)
            x = node("Mul", [x, self.const(f"{tag}_smooth", (1 / smooth).astype(np.float32))])
        packed = [token_weights(w * smooth[:, None] if smooth is not None else w) for w, _ in projections]
        rows = max(r for _, _, r in packed)
        axes = self.const("token_int8_axes", np.array([-1], np.int64), shared=True)
        hi = node("Max", [node("ReduceMax", [x, axes], keepdims=1),
                          self.const("token_int8_eps", np.array(1e-7, np.float32), shared=True)])
        lo = node("Min", [node("ReduceMin", [x, axes], keepdims=1),
                          self.const("token_int8_zero", np.array(0.0, np.float32), shared=True)])
        span = node("Sub", [hi, lo])
        scale = node("Mul", [span, self.const("token_int8_inv255", np.array(1 / 255, np.float32), shared=True)])
        negative = node("Mul", [span, self.const("token_int8_ninv255", np.array(-1 / 255, np.float32), shared=True)])
        zero = node("QuantizeLinear", [lo, negative], axis=-1, block_size=1)  # round(-lo / scale), u8
        q = node("QuantizeLinear", [x, scale, zero], axis=-1, block_size=k)
        zeros = node("Expand", [zero, self.const(f"token_int8_rows{rows}", np.array([1, 1, rows], np.int64),
                                                   shared=True)])
        qa = node("Concat", [q, zeros], axis=-1)
        for (wq, ws, r), (_, out) in zip(packed, projections):
            if r < rows:
                wq = np.concatenate([wq, np.zeros((rows - r, wq.shape[1]), np.int8)])
            # No bias input here: ORT applies a per-token a_scale after its bias (it would scale it).
            nodes.append(helper.make_node("MatMulIntegerToFloat", [qa, self.const(f"{out}_wq", wq), scale,
                                          self.const(f"{out}_ws", ws)], [out], name=f"{out}_int8",
                                          domain="com.microsoft"))
        return nodes

    def attention(self, n, w: np.ndarray) -> list:
        """A fused Attention (packed QKV weight) as three projections + MultiHeadAttention."""
        parts = qkv_parts(n, w)
        outs = [f"{n.name}_{r}" for r in "qkv"]
        nodes = self.group(n.input[0], list(zip(parts, outs)), n.name)
        nodes.append(mha_from_attention(n, outs, list(n.output), f"{n.name}_int8"))
        self.counts["attention -> MultiHeadAttention"] += 1
        return nodes

    def run(self) -> dict[str, int]:
        g = self.model.graph
        by_input: dict[str, list] = {}
        attention_nodes, first_use = {}, {}
        for i, n in enumerate(g.node):
            if n.op_type == "Attention" and not any(n.input[j] for j in (4, 6) if j < len(n.input)):
                w = _const_array(n.input[1], self.inits, self.producers)
                if w is not None and w.ndim == 2:
                    attention_nodes[n.name] = w
            elif n.op_type == "MatMul":
                w = _const_array(n.input[1], self.inits, self.producers)
                if w is not None and w.ndim == 2:
                    by_input.setdefault(n.input[0], []).append((n, w))
                    first_use.setdefault(n.input[0], n.name)
        replaced = {n.name for group in by_input.values() for n, _ in group} | set(attention_nodes)
        out = []
        for n in g.node:
            if n.name in attention_nodes:
                out += self.attention(n, attention_nodes[n.name])
            elif n.name in replaced:
                x = n.input[0]
                if first_use.get(x) == n.name:  # the whole group at its first member (x exists there)
                    out += self.group(x, [(w, m.output[0]) for m, w in by_input[x]], f"{n.name}_token")
            else:
                out.append(n)
        del g.node[:]
        g.node.extend(out)
        g.initializer.extend(self.new_inits)
        _drop_dead(g)
        for o in self.model.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = max(o.version, TOKEN_OPSET)
        if not any(o.domain == "com.microsoft" for o in self.model.opset_import):
            self.model.opset_import.append(__import__("onnx").helper.make_opsetid("com.microsoft", 1))
        return self.counts


def _drop_dead(g) -> None:
    """Remove nodes whose outputs nothing reads, then initializers nothing reads."""
    graph_outputs = {o.name for o in g.output}
    while True:
        used = graph_outputs | {i for n in g.node for i in n.input}
        keep = [n for n in g.node if any(o in used for o in n.output)]
        if len(keep) == len(g.node):
            break
        del g.node[:]
        g.node.extend(keep)
    used = {i for n in g.node for i in n.input} | graph_outputs
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def token_smoothing_inputs(model) -> list[str]:
    """The tensors the token rewrite smooths: LayerNorm outputs read by a constant-weight projection."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    out = []
    for n in g.node:
        if n.op_type in ("Attention", "MatMul") and len(n.input) > 1:
            x, p = n.input[0], producers.get(n.input[0])
            weight = n.input[1] in inits or (n.input[1] in producers and producers[n.input[1]].op_type == "Concat")
            if weight and p is not None and p.op_type in _NORMS and x not in out:
                out.append(x)
    return out


def channel_absmax(src: Path, names: list[str], feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-channel max |value| of the tensors ``names`` of the graph at ``src`` over ``feeds``' real
    (unpadded) tokens. The graph gets them as extra outputs in a temporary copy of its proto beside
    it (so external weights resolve without being copied)."""
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(x) for x in names if x not in have)
    tmp = src.with_name(f".{src.stem}.calibration.onnx")
    onnx.save(model, str(tmp))
    try:
        session = _session(tmp)
        amax: dict[str, np.ndarray] = {}
        for f in bar(feeds, desc="int8 smoothing statistics", unit="batch"):
            real = f["attention_mask"].astype(bool)
            for x, v in zip(names, session.run(names, f)):
                a = np.abs(v[real]).max(0)
                amax[x] = np.maximum(amax[x], a) if x in amax else a
    finally:
        tmp.unlink(missing_ok=True)
    return amax


def quantize_token_int8(src: Path, dst: Path, *, tokenizer, pad_id: int, typed: bool, alpha: float = TOKEN_ALPHA,
                        external: bool | None = None) -> dict[str, Any]:
    """Per-token int8 of the encoder graph at ``src`` into ``dst`` (``--int8-mode token``).

    Every constant-weight projection becomes an ONNX Runtime integer GEMM with per-channel s8
    weights; its input is quantized per token, asymmetric u8 (each token its own scale and zero
    point, computed in the graph at run time), so one outlier token or a batch mixing short and long
    texts no longer coarsens every other token's steps. Inputs read from a LayerNorm are first
    divided per channel by SmoothQuant factors (the weights multiplied by them), calibrated on the
    shipped texts; the fused Attention is split into its Q, K, V projections (quantized like the
    others) and a MultiHeadAttention over them; the projection after attention keeps ORT's cheaper
    per-tensor DynamicQuantizeMatMul (measured: no accuracy lost there).

    Returns:
        ``{"file", "method", "alpha", "activations", "weights", "projections", "calibration",
        "min_cosine_vs_fp32", "mean_cosine_vs_fp32"}`` (cosines on the held-out texts).
    """
    import onnx

    calib, held = calibration_feeds(tokenizer, pad_id, typed)
    ntok = sum(int(f["attention_mask"].sum()) for f in calib)
    proto = onnx.load(str(src), load_external_data=False)
    names = token_smoothing_inputs(proto)
    del proto
    say(f"int8 token: smoothing statistics of {len(names)} inputs on {len(calib)} batches ({ntok} tokens)")
    absmax = channel_absmax(src, names, calib)
    model = onnx.load(str(src))
    counts = _TokenRewrite(model, absmax, alpha).run()
    size = sum(t.ByteSize() for t in model.graph.initializer)
    if external is None:
        external = size > EXTERNAL_DATA_BYTES
    for name in (dst.name, dst.name + ".data"):
        (dst.parent / name).unlink(missing_ok=True)
    onnx.save_model(model, str(dst), save_as_external_data=external,
                    location=dst.name + ".data" if external else None)
    del model
    cos_min, cos_mean = _min_cosine(_session(dst), held, _pooled(_session(src), held))
    return {"file": dst.name, "method": "per-token", "alpha": alpha,
            "activations": "u8 per token (asymmetric, at run time)", "weights": "s8 per channel",
            "projections": counts,
            "calibration": {"batches": len(calib), "tokens": ntok, "smoothed_inputs": len(names),
                            "held_out_texts": sum(len(f["input_ids"]) for f in held)},
            "min_cosine_vs_fp32": cos_min, "mean_cosine_vs_fp32": cos_mean}
