"""Padding removal in an encoder graph: every token-wise op runs on the real tokens only.

A batch of texts of different lengths is padded to its longest; in the exported graph every
projection, GELU and LayerNorm then also runs on the padding (21 % of the rows of the short
fill-mask workload, 8 % of the embed corpus's, after length-sorted batching). This pass rewrites an
encoder graph so that the hidden states travel *packed*, ``[1, real tokens, hidden]``, and are laid
out ``[batch, sequence, hidden]`` only where attention needs the layout:

- after the embeddings' LayerNorm (the graph's first), the hidden states are packed with a Gather
  of the real tokens' rows (indices from ``attention_mask``, computed once per run);
- a fused ``Attention`` (packed QKV weight, fp32) becomes one QKV MatMul on the packed tokens,
  unpacked once and split into Q, K, V for a ``MultiHeadAttention``; ONNX Runtime's CPU Attention
  computes the QKV projection per batch and head, which ran at about 2/3 of the MatMul rate here;
- every other ``MultiHeadAttention``'s query, key and value (the token int8 graph's) are unpacked
  (padded slots read some real token's row: they are masked as keys and their query rows are
  dropped); every attention's output is packed;
- ``last_hidden_state`` is unpacked with zeros at the padded positions.

Everything between is per token (MatMul, Sum, LayerNormalization, BiasGelu, the int8 graphs'
per-token or per-tensor quantization: per-tensor scales now see the real tokens only), so the
graph's answers at real positions are those of the padded graph (within float rounding); at padded
positions ``last_hidden_state`` is 0 where torch returns values nothing reads.

Measured (random roberta-large, fp32, 2 cores, one process, ``benchmarks/onnx_fp32.py``): the short
fill-mask workload 1.22x, the embed corpus 1.15x the padded fused graph.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import ArtifactError
from .static import _ATTENTIONS, _const_array, _drop_dead, mha_from_attention, qkv_parts

_NORMS = ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization")
PREFIX = "ek_pack"  # names of what the pass adds


class _Pass:
    def __init__(self, model):
        from onnx import numpy_helper

        self.model, self.g = model, model.graph
        self.inits = {t.name: t for t in self.g.initializer}
        self.producers = {o: n for n in self.g.node for o in n.output}
        self.new_inits: list = []
        self.numpy_helper = numpy_helper
        self.counts = {"attention -> MultiHeadAttention": 0, "attentions": 0}

    def const(self, name: str, value) -> str:
        name = f"{PREFIX}_{name}"
        self.new_inits.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    @staticmethod
    def node(op: str, inputs: list[str], output: str, **attrs):
        from onnx import helper

        return helper.make_node(op, inputs, [output], name=output, **attrs)

    def indices(self, mask: str) -> list:
        """Nodes computing, from the [batch, seq] mask: the real tokens' flat positions (``real``),
        for every flat position the packed row it reads (``unpack``: a pad reads the row before it,
        or row 0), the same with pads reading a zero row appended at the end (``unpack0``), and the
        [batch, seq, -1] shape to unpack to."""
        from onnx import TensorProto

        n = self.node
        c = self.const
        p = PREFIX
        return [
            n("Reshape", [mask, c("flat_shape", np.array([-1], np.int64))], f"{p}_flat_mask"),
            n("Cast", [f"{p}_flat_mask"], f"{p}_flat_bool", to=TensorProto.BOOL),  # any nonzero: a real token
            n("Cast", [f"{p}_flat_bool"], f"{p}_flat", to=TensorProto.INT64),
            n("NonZero", [f"{p}_flat"], f"{p}_nonzero"),
            n("Reshape", [f"{p}_nonzero", c("flat_shape2", np.array([-1], np.int64))], f"{p}_real"),
            n("CumSum", [f"{p}_flat", c("axis0", np.array(0, np.int64))], f"{p}_cumsum"),
            n("Sub", [f"{p}_cumsum", c("one", np.array(1, np.int64))], f"{p}_before"),
            n("Max", [f"{p}_before", c("zero", np.array(0, np.int64))], f"{p}_unpack"),
            n("Shape", [f"{p}_real"], f"{p}_count"),
            n("Equal", [f"{p}_flat", c("zero_mask", np.array(0, np.int64))], f"{p}_is_pad"),
            n("Where", [f"{p}_is_pad", f"{p}_count", f"{p}_before"], f"{p}_unpack0"),
            n("Shape", [mask], f"{p}_batch_seq"),
            n("Concat", [f"{p}_batch_seq", c("minus_one", np.array([-1], np.int64))], f"{p}_shape", axis=0),
        ]

    def pack(self, x: str, tag: str) -> tuple[list, str]:
        """[batch, seq, hidden] -> [1, real tokens, hidden]"""
        flat = self.node("Reshape", [x, self.const(f"{tag}_rows", np.array([1, -1, 0], np.int64))], f"{tag}_rows")
        return [flat, self.node("Gather", [flat.output[0], f"{PREFIX}_real"], f"{tag}_packed", axis=1)], \
            f"{tag}_packed"

    def unpack(self, x: str, tag: str, zeros: bool = False) -> tuple[list, str]:
        """[1, real tokens, hidden] -> [batch, seq, hidden] (pads read a real row, or 0 with ``zeros``)"""
        nodes, index = [], f"{PREFIX}_unpack"
        if zeros:
            row = self.const(f"{tag}_zero_row", np.zeros((1, 1, self.hidden), np.float32))
            nodes.append(self.node("Concat", [x, row], f"{tag}_with_zero", axis=1))
            x, index = f"{tag}_with_zero", f"{PREFIX}_unpack0"
        nodes.append(self.node("Gather", [x, index], f"{tag}_flat", axis=1))
        nodes.append(self.node("Reshape", [f"{tag}_flat", f"{PREFIX}_shape"], f"{tag}_padded"))
        return nodes, f"{tag}_padded"

    def projected(self, n, w: np.ndarray, x: str) -> tuple[list, list[str]]:
        """A fused Attention's QKV projection of the packed ``x``: one MatMul with its packed weight,
        unpacked once, split into Q, K, V (measured against three MatMuls each unpacked: 1.02x
        the fill-mask throughput, single-text p50 -5 %, roberta-large fp32)."""
        from onnx import helper

        # the Attention's own weight where it is an initializer (no second copy of it); else its value
        weight = n.input[1] if n.input[1] in self.inits else self.const(f"{n.name}_wqkv", w)
        qkv = self.node("MatMul", [x, weight], f"{n.name}_qkv")
        nodes, u = self.unpack(qkv.output[0], qkv.output[0])
        widths = self.const(f"{n.name}_widths", np.array([p.shape[1] for p in qkv_parts(n, w)], np.int64))
        padded = [f"{n.name}_{r}_padded" for r in "qkv"]
        return [qkv, *nodes, helper.make_node("Split", [u, widths], padded, name=f"{n.name}_split", axis=-1)], padded

    def attended(self, n, original: str, rename: dict[str, str]) -> list:
        """An attention node ``n`` writing ``original`` in the padded layout, and its output packed
        (read under the packed name from here on)."""
        n.output[0] = f"{original}_padded_out"
        nodes, rename[original] = self.pack(n.output[0], f"{original}_att")
        self.counts["attentions"] += 1
        return [n, *nodes]

    def run(self) -> dict[str, int]:
        from onnx import helper

        g = self.g
        names = [i.name for i in g.input]
        if "attention_mask" not in names or len(g.output) != 1:
            raise ArtifactError("padding removal: not an encoder graph (input attention_mask, one output)")
        first_norm = next((n for n in g.node if n.op_type in _NORMS), None)
        attentions = [n for n in g.node if n.op_type in _ATTENTIONS]
        if first_norm is None or not attentions:
            raise ArtifactError("padding removal: the graph has no LayerNorm or no attention")
        self.hidden = int(self.numpy_helper.to_array(self.inits[first_norm.input[1]]).shape[-1])
        start = first_norm.output[0]
        final = g.output[0].name
        out = self.indices("attention_mask")
        rename: dict[str, str] = {}
        for n in g.node:
            n.input[:] = [rename.get(i, i) for i in n.input]
            if n.op_type == "Attention" and n.domain == "com.microsoft":
                ins = list(n.input) + [""] * 7
                if ins[4] or ins[6] or any(n.output[1:]):
                    raise ArtifactError(f"padding removal: {n.name} has past state; not an encoder's attention")
                original = n.output[0]
                w = _const_array(ins[1], self.inits, self.producers)
                if w is None or w.ndim != 2:  # weights computed in the graph: the fused op stays, on padded input
                    nodes, n.input[0] = self.unpack(ins[0], f"{n.name}_in")
                    out += nodes
                else:  # one QKV MatMul on the packed tokens, unpacked once, split for MultiHeadAttention
                    nodes, padded = self.projected(n, w, ins[0])
                    out += nodes
                    n = mha_from_attention(n, padded, [original], f"{n.name}_mha")
                    self.counts["attention -> MultiHeadAttention"] += 1
                out += self.attended(n, original, rename)
            elif n.op_type == "MultiHeadAttention" and n.domain == "com.microsoft":
                if any(n.output[1:]) or any(list(n.input)[6:]):
                    raise ArtifactError(f"padding removal: {n.name} has past state; not an encoder's attention")
                for j in range(min(3, len(n.input))):
                    if n.input[j]:
                        nodes, n.input[j] = self.unpack(n.input[j], f"{n.name}_in{j}")
                        out += nodes
                out += self.attended(n, n.output[0], rename)
            else:
                out.append(n)
                if start in n.output:
                    nodes, p = self.pack(start, f"{PREFIX}_start")
                    out += nodes
                    rename[start] = p
        if start not in rename:
            raise ArtifactError("padding removal: the embeddings' LayerNorm output is read by nothing")
        # the packed tensor that would have been the output -> unpacked, zeros at pads
        packed_final = f"{final}_{PREFIX}"
        for n in out:
            n.output[:] = [packed_final if o == final else o for o in n.output]
            n.input[:] = [packed_final if i == final else i for i in n.input]
        nodes, u = self.unpack(packed_final, f"{PREFIX}_out", zeros=True)
        out += nodes
        out.append(helper.make_node("Identity", [u], [final], name=f"{PREFIX}_output"))
        if self.counts["attentions"] != len(attentions):
            raise ArtifactError("padding removal: an attention was not rewritten")
        del g.node[:]
        g.node.extend(out)
        g.initializer.extend(self.new_inits)
        # Shapes the exporter recorded say [batch, sequence, ...] for tensors that are now
        # [1, tokens, ...]; ONNX Runtime plans buffers by them: drop them, it infers its own.
        del g.value_info[:]
        _drop_dead(g)
        if not any(o.domain == "com.microsoft" for o in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        return self.counts


def remove_padding(model) -> dict[str, int]:
    """Rewrite an encoder ``onnx.ModelProto`` in place (see the module doc); returns what it did."""
    return _Pass(model).run()


def remove_padding_file(path: Path, *, external: bool | None = None) -> dict[str, Any] | None:
    """``remove_padding`` on the graph at ``path``, written beside it and renamed over it; None,
    and the file left as it is, where the graph has no attention op (an unfused graph)."""
    import onnx

    from .layout import EXTERNAL_DATA_BYTES

    model = onnx.load(str(path), load_external_data=False)
    if not any(n.op_type in _ATTENTIONS for n in model.graph.node):
        return None
    from onnx.external_data_helper import load_external_data_for_model

    load_external_data_for_model(model, str(path.parent))
    counts = remove_padding(model)
    if external is None:
        external = sum(t.ByteSize() for t in model.graph.initializer) > EXTERNAL_DATA_BYTES
    data = path.with_name(path.name + ".data")
    # The graph names its data file: write both under their final names in a directory beside the
    # target, then move them over it (data first: the old graph is replaced last).
    stage = path.with_name(f".{path.name}.packing")
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    onnx.save_model(model, str(stage / path.name), save_as_external_data=external,
                    location=data.name if external else None)
    del model
    for f in stage.iterdir():
        shutil.copymode(path, f)  # the permissions the converter gave the graph
    data.unlink(missing_ok=True)
    if external:
        (stage / data.name).replace(data)
    (stage / path.name).replace(path)
    stage.rmdir()
    return counts
