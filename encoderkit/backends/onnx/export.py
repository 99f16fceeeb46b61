"""ONNX: dynamo export, attention fusion for ONNX Runtime, int8/fp16 variants.

Files written to ``onnx/``:

- ``encoder.onnx``   input_ids, attention_mask -> last_hidden_state. Fused by
  ``onnxscript.rewriter.ort_fusions.optimize_for_ort`` (Attention, BiasGelu; its
  SkipLayerNormalization is written back as Sum + LayerNormalization, faster on ORT's CPU);
  ``onnxruntime.transformers``' optimizer finds no attention in a dynamo graph. Then padding removal
  (``packing.py``, every encoder graph; ``--no-pack`` keeps padding): the hidden states travel as
  the real tokens only, laid out [batch, sequence] just for attention (the fused Attention becomes
  Q, K, V MatMuls + MultiHeadAttention); padded positions of ``last_hidden_state`` are 0.
- one fp32 graph per head the model carries, hidden [m, hidden] -> logits [m, out], run only on the
  rows the head reads (gathered by the runtime): ``head.onnx`` (MLM, at mask positions: no other
  position is projected onto the vocabulary), ``classifier.onnx`` (sequence classification, first
  token), ``<name>.head.onnx`` for any other head (``layout.head_file``). Every encoder (fp32, int8,
  fp16) shares them. They are traced from the head's steps (``backends/heads.py``).
- ``analysis.onnx``  input_ids, attention_mask -> every hidden state and every attention
  probability (unfused: fused attention does not expose its probabilities). Used by
  ``embed(layer=k)`` for inner layers and by ``attentions()``.
- ``encoder.int8.onnx`` / ``encoder.fp16.onnx`` with ``--quantize`` (and their analysis graphs). int8
  by ``--int8-mode``: token (default; ``static.quantize_token_int8``), dynamic (ONNX Runtime's
  ``quantize_dynamic``) or static (``static.quantize_static_int8``).

Architectures with segment types (BERT) get a third input, ``token_type_ids``, on the encoder and
analysis graphs, so text pairs run on ONNX as they do on torch.

Weights go to external data (``*.onnx.data``, same directory) above EXTERNAL_DATA_BYTES.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.errors import InputError
from ...core.options import option
from ...storage.checkpoint import Checkpoint
from ...storage.hf import copy_model_files
from ..converter import Converter, NoOptions
from .layout import EXTERNAL_DATA_BYTES, GRAPHS, INFO_FILE, head_file, head_key, op_counts
from .static import STATIC_DEFAULTS

OPSET = 18
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "BiasGelu", "FastGelu",
             "EmbedLayerNormalization", "LayerNormalization")
QUANTIZATIONS = ("int8", "fp16")
INT8_MODES = ("dynamic", "static", "token")


@dataclass(frozen=True)
class OnnxOptions(NoOptions):
    quantize: tuple[str, ...] | str | None = option(
        None, "also write quantized ONNX encoders: int8, fp16 or int8,fp16", type=str)
    fuse: bool = option(True, "keep the ONNX graph unfused (no attention fusion)")
    pack: bool = option(True, "keep padding in the encoder graphs (no padding removal: every projection "
                        "then also runs on the padded positions)")
    int8_source: str = option("fused", "graph int8 quantizes: fused (default; dynamic mode keeps QKV fp32 there) "
                              "or unfused", choices=("fused", "unfused"))
    int8_weights: str = option("u8", "dynamic int8 weight type: u8 (default, more accurate) or s8 (faster, "
                               "less accurate; may saturate on AVX2 CPUs without VNNI)", choices=("u8", "s8"))
    # token is the default: on the real MiniLM (470 varied texts vs sentence-transformers) min cosine
    # 0.993 where dynamic u8 gave 0.956 and CTranslate2 int8 0.974, at 1.83x dynamic u8's texts per
    # CPU-second (random roberta-base: embed 2.6x, fill-mask 2.9x); benchmarks/int8_search.py.
    int8_mode: str = option("token", "int8 quantization: token (default: activations quantized per token at "
                            "run time, LayerNorm-fed inputs smoothed, QKV included; the fastest and most "
                            "accurate here: real MiniLM min cosine 0.993 vs dynamic's 0.956, 1.8x dynamic's "
                            "CPU throughput), dynamic (activations quantized per tensor at run time, ORT's "
                            "quantizer) or static (activation ranges calibrated on the shipped corpus, QDQ, "
                            "the most sensitive MatMuls kept fp32)", choices=INT8_MODES)
    int8_calibration: str = option(STATIC_DEFAULTS["method"], "static int8 calibration method",
                                   choices=("minmax", "percentile", "entropy"))
    int8_max_exclusions: int = option(STATIC_DEFAULTS["max_exclusions"], "static int8: most MatMuls the "
                                      "sensitivity step may keep in fp32 to reach the accuracy target", type=int)
    int8_target_cosine: float = option(STATIC_DEFAULTS["target_cosine"], "static int8: min cosine vs fp32 "
                                       "on held-out texts the sensitivity step aims for", cli=False)
    per_channel: bool = option(True, "per-channel int8 weight scales", cli=False)
    external_data: bool | None = option(None, "force weights into external data (None: above 1 GiB)", cli=False)

    def __post_init__(self):
        q = self.quantize or ()
        names = tuple(x.strip() for x in q.split(",") if x.strip()) if isinstance(q, str) else tuple(q)
        for x in names:
            if x not in QUANTIZATIONS:
                raise InputError(f"--quantize takes int8, fp16 or int8,fp16; got {x!r}")
        object.__setattr__(self, "quantize", tuple(dict.fromkeys(names)))
        if self.int8_mode not in INT8_MODES:  # make_options checks it too; this covers direct construction
            raise InputError(f"--int8-mode takes {' or '.join(INT8_MODES)}; got {self.int8_mode!r}")
        if not (isinstance(self.int8_max_exclusions, int) and self.int8_max_exclusions >= 0):
            raise InputError(f"--int8-max-exclusions takes a whole number >= 0; got {self.int8_max_exclusions!r}")

    def variants(self) -> frozenset[str]:
        return frozenset(self.quantize)  # the backends onnx-int8 / onnx-fp16 (registry.variant)


def _export(module, args: tuple, names: list[str], dynamic: dict, outputs: list[str]):
    """torch.onnx.export with the dynamo exporter; returns the onnx_ir model."""
    import torch

    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(module.eval(), args, dynamo=True, opset_version=OPSET,
                                    input_names=names, output_names=outputs, dynamic_shapes=dynamic,
                                    verbose=False)
    return program.model


def _save(model, path: Path, *, external: bool | None = None) -> None:
    import onnx_ir as ir

    size = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    if external is None:
        external = size > EXTERNAL_DATA_BYTES
    if external:
        ir.save(model, path, external_data=path.name + ".data")
    else:
        ir.save(model, path)


@dataclass
class _Trace:
    """What every graph of one export is traced with: the model, its encoder, the example inputs."""

    spec: Any
    model: Any
    encoder: Any
    inputs: list[str]
    args: tuple
    dynamic: dict


class OnnxConverter(Converter):
    name = "onnx"
    Options = OnnxOptions

    def export(self, ckpt: Checkpoint, out: Path) -> dict[str, Any]:
        o: OnnxOptions = self.options
        copy_model_files(ckpt.directory, out, ckpt.spec)
        trace = _trace(ckpt)
        info: dict[str, Any] = {"opset": OPSET, "fused": o.fuse, "files": {}, "packed": []}
        self._encoder(ckpt, trace, out, info)
        self._analysis(trace, out, info)
        for head in ckpt.spec.heads:
            info["files"][head_key(head)] = _head_graph(ckpt, head, out, o.external_data)
        del trace
        if "fp16" in o.quantize:
            info["files"]["encoder_fp16"] = convert_fp16(out / GRAPHS["encoder"], out / GRAPHS["encoder_fp16"])
        if o.pack:
            self._pack(out, info)
        (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        return {"opset": OPSET, "graphs": ", ".join(info["files"].values()),
                **({"int8 quantized from": info["int8_source"]} if "int8_source" in info else {}),
                **({"int8 mode": o.int8_mode} if "int8" in o.quantize else {}),
                **(static_report(info["int8_static"]) if "int8_static" in info else {}),
                **(token_report(info["int8_token"]) if "int8_token" in info else {}),
                "fused operators (encoder.onnx)": info["fused_ops"] or "none (--no-fuse)",
                "padding removed in": ", ".join(info["packed"]) or "none"}

    def _pack(self, out: Path, info: dict[str, Any]) -> None:
        """Padding removal (packing.py) in every encoder graph that has attention ops (an unfused
        graph has none: --no-fuse keeps padding). Last: the int8 and fp16 encoders are derived from
        the padded fused graph, each then packed."""
        from .packing import remove_padding_file

        for key in ("encoder", "encoder_int8", "encoder_fp16"):
            name = info["files"].get(key)
            if name and remove_padding_file(out / name, external=self.options.external_data) is not None:
                info["packed"].append(name)
        counts = op_counts(out / GRAPHS["encoder"])
        info["fused_ops"] = {k: counts[k] for k in FUSED_OPS if counts.get(k)}

    def _encoder(self, ckpt: Checkpoint, t: _Trace, out: Path, info: dict[str, Any]) -> None:
        """encoder.onnx (fused unless --no-fuse) and, with int8, the int8 encoder from the fused
        graph (default) or from the unfused one (--int8-source unfused)."""
        from ..transformers_model import ExportEncoder

        o: OnnxOptions = self.options
        t.encoder.set_attn_implementation("sdpa")
        enc = _export(ExportEncoder(t.encoder, False), t.args, t.inputs, t.dynamic, ["last_hidden_state"])
        if "int8" in o.quantize and (o.int8_source == "unfused" or not o.fuse):
            # Dynamic mode: from the unfused graph every projection (QKV included) becomes
            # MatMulInteger: on random roberta-large here 17.0 vs 14.7 sentences/s
            # (benchmarks/onnx_ablation.py), but on the real MiniLM one sentence fell to cosine
            # 0.985 (< 0.99), so it is opt-in. Token mode quantizes either graph the same way.
            src = out / ".int8-source"
            src.mkdir()
            _save(enc, src / GRAPHS["encoder"], external=o.external_data)
            info["files"]["encoder_int8"] = _encoder_int8(o, ckpt, src / GRAPHS["encoder"],
                                                          out / GRAPHS["encoder_int8"], info)
            info["int8_source"] = "unfused graph"
            shutil.rmtree(src)
        if o.fuse:
            from onnxscript.rewriter.ort_fusions import optimize_for_ort

            enc, _ = optimize_for_ort(enc)
            unfuse_skip_layer_norm(enc)
        _save(enc, out / GRAPHS["encoder"], external=o.external_data)
        del enc
        if "int8" in o.quantize and "encoder_int8" not in info["files"]:
            # Default: quantize the FUSED graph. Token mode splits its Attention into int8 Q, K, V
            # projections + MultiHeadAttention. Dynamic mode leaves QKV fp32: ORT's quantizer makes
            # QAttention only of an Attention without qkv_hidden_sizes, with a constant packed
            # weight and no attention_bias, and the fused one has all three (rewritten to qualify,
            # it ran 1.2x the dynamic s8 graph but at min cosine 0.950 on real MiniLM texts).
            info["files"]["encoder_int8"] = _encoder_int8(o, ckpt, out / GRAPHS["encoder"],
                                                          out / GRAPHS["encoder_int8"], info)
            info["int8_source"] = "fused graph"
        counts = op_counts(out / GRAPHS["encoder"])
        info["fused_ops"] = {k: counts[k] for k in FUSED_OPS if counts.get(k)}
        info["files"]["encoder"] = GRAPHS["encoder"]

    def _analysis(self, t: _Trace, out: Path, info: dict[str, Any]) -> None:
        """analysis.onnx (every hidden state and attention probability) and its quantized twins."""
        from ..transformers_model import ExportEncoder

        o: OnnxOptions = self.options
        t.encoder.set_attn_implementation("eager")  # explicit softmax: probabilities as outputs
        n = t.spec.num_layers
        outputs = [f"hidden_state_{i}" for i in range(n + 1)] + [f"attention_{i}" for i in range(n)]
        analysis = _export(ExportEncoder(t.encoder, True), t.args, t.inputs, t.dynamic, outputs)
        _save(analysis, out / GRAPHS["analysis"], external=o.external_data)
        del analysis
        t.encoder.set_attn_implementation("sdpa")
        info["files"]["analysis"] = GRAPHS["analysis"]
        # The quantized backends get their own analysis graph: their inner layers and attention
        # probabilities are then the quantized model's, not the fp32 graph's. (Dynamic int8 in every
        # mode: static and token would need their own calibration over a graph with 2n+1 outputs, and
        # token its Attention split, which the unfused analysis graph does not have; onnx_info.json's
        # int8_static / int8_token say so.)
        if "int8" in o.quantize:
            info["files"]["analysis_int8"] = quantize_int8(out / GRAPHS["analysis"], out / GRAPHS["analysis_int8"],
                                                           per_channel=o.per_channel, weights=o.int8_weights)
        if "fp16" in o.quantize:
            info["files"]["analysis_fp16"] = convert_fp16(out / GRAPHS["analysis"], out / GRAPHS["analysis_fp16"])


def _trace(ckpt: Checkpoint) -> _Trace:
    """transformers' model over the checkpoint and example inputs with dynamic batch and length
    (token types too where the architecture has segment types: BERT pairs)."""
    import torch

    from ..transformers_model import build_torch_model, encoder_of

    spec = ckpt.spec
    model = build_torch_model(spec, ckpt.state)
    b, s = torch.export.Dim("batch"), torch.export.Dim("sequence", max=spec.max_tokens_per_text)
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones(2, 8, dtype=torch.long)
    dyn = {"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}}
    inputs, args = ["input_ids", "attention_mask"], (ids, mask)
    if spec.architecture.segment_types:
        inputs.append("token_type_ids")
        args = (ids, mask, torch.zeros(2, 8, dtype=torch.long))
        dyn["token_type_ids"] = {0: b, 1: s}
    return _Trace(spec, model, encoder_of(model, spec), inputs, args, dyn)


def _head_graph(ckpt: Checkpoint, head: str, out: Path, external: bool | None) -> str:
    """The head's steps traced into hidden [rows, hidden] -> logits [rows, out]."""
    import torch

    from ..heads import head_module

    module = head_module(ckpt.spec, head, ckpt.state)
    graph = _export(module, (torch.zeros(3, ckpt.spec.hidden_size),), ["hidden"],
                    ({0: torch.export.Dim("rows")},), ["logits"])
    name = head_file(head)
    _save(graph, out / name, external=external)
    return name


def unfuse_skip_layer_norm(model) -> int:
    """Replace every com.microsoft SkipLayerNormalization of an onnx_ir model by
    ``LayerNormalization(Sum(input, skip, bias))``; returns how many.

    ONNX Runtime's CPU SkipLayerNormalization (1.32) took 2.0 ms where Sum + LayerNormalization of
    the same tensors took 0.53 ms ([32, 32, 384], 1 thread; 3-5x at every shape measured,
    ``benchmarks/onnx_fp32.py``), and the encoder runs 2 per layer: the real MiniLM's token int8
    graph went from 117 to 91 ms of CPU per [32, 32] batch. The runtime keeps ORT from fusing them
    back (``runtime.py``).
    """
    import onnx_ir as ir

    graph = model.graph
    count = 0
    for node in list(graph):
        if node.op_type != "SkipLayerNormalization" or node.domain != "com.microsoft":
            continue
        if any(out.uses() or out.is_graph_output() for out in node.outputs[1:]):
            continue  # its mean / inv-std / sum outputs are read: leave it
        ins = list(node.inputs) + [None] * 5
        x, skip, gamma, beta, bias = ins[:5]
        eps = node.attributes.get("epsilon")
        terms = [v for v in (x, skip, bias) if v is not None]
        total = ir.node("Sum", terms, name=f"{node.name}_sum")
        norm = ir.node("LayerNormalization", [total.outputs[0], gamma, *([beta] if beta is not None else [])],
                       {"axis": -1, "epsilon": eps.as_float() if eps is not None else 1e-12},
                       name=f"{node.name}_ln")
        ir.convenience.replace_nodes_and_values(graph, node, [node], [total, norm], [node.outputs[0]],
                                                [norm.outputs[0]])
        count += 1
    return count


def _encoder_int8(o: OnnxOptions, ckpt: Checkpoint, src: Path, dst: Path, info: dict[str, Any]) -> str:
    """The int8 encoder in the selected mode; static mode records its calibration and exclusions,
    token mode its smoothing calibration and what each projection became."""
    if o.int8_mode == "dynamic":
        return quantize_int8(src, dst, per_channel=o.per_channel, weights=o.int8_weights)
    if o.int8_mode == "token":
        from .static import quantize_token_int8

        record = quantize_token_int8(src, dst, tokenizer=ckpt.tokenizer(), pad_id=ckpt.spec.pad_token_id,
                                     typed=bool(ckpt.spec.architecture.segment_types), external=o.external_data)
        record["analysis_int8"] = "dynamic"
        info["int8_token"] = record
        return record["file"]
    from .static import quantize_static_int8

    record = quantize_static_int8(src, dst, tokenizer=ckpt.tokenizer(), pad_id=ckpt.spec.pad_token_id,
                                  typed=bool(ckpt.spec.architecture.segment_types), method=o.int8_calibration,
                                  per_channel=o.per_channel, target_cosine=o.int8_target_cosine,
                                  max_exclusions=o.int8_max_exclusions)
    record["analysis_int8"] = "dynamic"
    info["int8_static"] = record
    return record["file"]


def static_report(r: dict[str, Any]) -> dict[str, str]:
    """The static int8 facts for report.md: calibration, and what the sensitivity step kept in fp32."""
    excl = "; ".join(f"{e['node']} (error {e['error_nsr']:.2e}, min cosine after {e['min_cosine_after']:.4f})"
                     for e in r["excluded"]) or "none"
    return {"int8 static calibration": f"{r['method']}, {r['calibration']['batches']} batches, "
                                       f"{r['calibration']['tokens']} tokens, activations {r['activations']}, "
                                       f"weights {r['weights']}",
            "int8 static MatMuls quantized": f"{r['quantized_matmuls']} (kept fp32: {len(r['excluded'])})",
            "int8 static min cosine vs fp32 (held-out texts)": f"{r['steps'][0]['min_cosine']:.4f} before "
                                                               f"exclusions, {r['min_cosine_vs_fp32']:.4f} after "
                                                               f"(target {r['target_cosine']})",
            "int8 static kept fp32 (worst first)": excl}


def token_report(r: dict[str, Any]) -> dict[str, str]:
    """The token int8 facts for report.md: what each projection became, calibration, accuracy."""
    c = r["calibration"]
    return {"int8 token projections": ", ".join(f"{k} {v}" for k, v in r["projections"].items() if v),
            "int8 token smoothing": f"alpha {r['alpha']}, {c['smoothed_inputs']} inputs, calibrated on "
                                    f"{c['batches']} batches ({c['tokens']} tokens)",
            "int8 token min cosine vs fp32 (held-out texts)": f"{r['min_cosine_vs_fp32']:.4f} "
                                                             f"(mean {r['mean_cosine_vs_fp32']:.5f})"}


def quantize_int8(src: Path, dst: Path, *, per_channel: bool = True, weights: str = "u8") -> str:
    """ONNX Runtime dynamic int8 quantization of the encoder (weights int8, activations at run time).

    The MLM head stays in fp32 (it runs at mask positions only, so it is cheap, and its vocabulary
    projection is where int8 costs the most accuracy; see DESIGN.md).
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # "consider pre-processing"

    # u8 weights (U8U8) by default. s8 weights (U8S8) use ORT's faster VNNI kernels (2.2-2.7x per
    # GEMM on this AVX-512 VNNI EPYC, benchmarks/results/profile_int8.md) but on the real MiniLM
    # dropped the min cosine vs torch over the 64 workload texts to 0.981 (u8 0.991); on AVX2 CPUs
    # without VNNI, U8S8 goes through VPMADDUBSW, which can saturate.
    weight_type = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}[weights]
    quantize_dynamic(str(src), str(dst), weight_type=weight_type, per_channel=per_channel,
                     op_types_to_quantize=["MatMul", "Attention"],
                     extra_options={"MatMulConstBOnly": True})
    return dst.name


def convert_fp16(src: Path, dst: Path) -> str:
    """fp16 weights and compute, fp32 inputs/outputs (for GPUs; still loads and runs on CPU)."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True, use_symbolic_shape_infer=False)
    size = sum(t.ByteSize() for t in model.model.graph.initializer)
    external = size > EXTERNAL_DATA_BYTES
    onnx.save_model(model.model, str(dst), save_as_external_data=external,
                    location=dst.name + ".data" if external else None)
    return dst.name
