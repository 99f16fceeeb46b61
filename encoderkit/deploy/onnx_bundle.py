"""Target ``onnx``: the chosen encoder (+ MLM head) ONNX graphs, tokenizer.json, bundle.json and
the standalone ``run.py`` (onnxruntime + tokenizers + numpy only).

Bundle layout::

    model.onnx [model.onnx.data]   encoder: input_ids, attention_mask -> last_hidden_state
                                   (+ sentence_embedding when packaged with --pooling)
    head.onnx                      MLM head: hidden [m, hidden] -> logits [m, vocab] (fill-mask)
    classifier.onnx                classification head: [CLS] rows [m, hidden] -> logits [m, labels]
    token-classification.head.onnx with ner: every real token's row [m, hidden] -> logits [m, labels]
    question-answering.head.onnx   with qa: every real token's row [m, hidden] -> start/end logits [m, 2]
    tokenizer.json ...             the model's tokenizer (its own truncation/padding removed)
    run.py  requirements.txt       the runner and its pinned dependencies
    bundle.json                    facts, sha256 of every file, probe outputs, footprint
    model.ort                      with --ort: the encoder in ONNX Runtime Mobile's format
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..backends.onnx.layout import head_file, head_key
from ..core.errors import ArtifactError
from ..core.heads import QUESTION_ANSWERING, TOKEN_CLASSIFICATION
from .common import (PY_COMMON_REQUIREMENTS, PY_REQUIREMENTS, Converted, Plan, base_bundle, finish, probe_texts,
                     reference_outputs, template, write_tokenizer)

ENCODER_KEY = {"none": "encoder", "int8": "encoder_int8", "fp16": "encoder_fp16"}
# Above this, weights go to model.onnx.data (protobuf's 2 GB cap; same rule as the converter).
EXTERNAL_DATA_BYTES = 1 << 30
SENTENCE_OUTPUT = "sentence_embedding"


def add_pooling(model, pooling: str, normalize: bool, hidden_size: int, source_output: str = "last_hidden_state"):
    """Append pooling (and L2 normalisation) to an encoder graph as a second output.

    The new output ``sentence_embedding`` [batch, hidden] equals encoderkit's
    ``embed(pooling=..., normalize=...)`` on the last layer: mean and max over real tokens only
    (attention_mask), cls = the first token. ``last_hidden_state`` stays an output, so the same
    graph still serves fill-mask and other poolings.

    Args:
        model: an ``onnx.ModelProto`` with inputs ``attention_mask`` and output ``source_output``.
    Returns:
        The same ModelProto, modified.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 18:  # ReduceMax takes axes as an input from 18 on; ours are exported at 18
        raise ArtifactError(f"encoder graph has opset {opset}; in-graph pooling needs >= 18")
    h = source_output
    p = "ek_pool/"

    def const(name: str, value) -> str:
        g.initializer.append(numpy_helper.from_array(np.asarray(value), p + name))
        return p + name

    nodes = [helper.make_node("Cast", ["attention_mask"], [p + "mask_f"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", [p + "mask_f", const("axis2", np.array([2], np.int64))], [p + "mask3"])]
    if pooling == "cls":
        nodes.append(helper.make_node("Gather", [h, const("zero", np.array(0, np.int64))], [p + "pooled"], axis=1))
    elif pooling == "mean":
        axis1 = const("axis1", np.array([1], np.int64))
        nodes += [helper.make_node("Mul", [h, p + "mask3"], [p + "masked"]),
                  helper.make_node("ReduceSum", [p + "masked", axis1], [p + "sum"], keepdims=0),
                  helper.make_node("ReduceSum", [p + "mask3", axis1], [p + "count"], keepdims=0),
                  helper.make_node("Max", [p + "count", const("one", np.array(1.0, np.float32))], [p + "count1"]),
                  helper.make_node("Div", [p + "sum", p + "count1"], [p + "pooled"])]
    elif pooling == "max":
        nodes += [helper.make_node("Cast", [p + "mask3"], [p + "mask_b"], to=TensorProto.BOOL),
                  helper.make_node("Where", [p + "mask_b", h, const("neg_inf", np.array(-np.inf, np.float32))],
                                   [p + "where"]),
                  helper.make_node("ReduceMax", [p + "where", const("axis1", np.array([1], np.int64))],
                                   [p + "pooled"], keepdims=0)]
    else:
        raise ValueError(pooling)
    out = p + "pooled"
    if normalize:  # x / max(||x||, 1e-12), as embed(normalize=True)
        nodes += [helper.make_node("Mul", [out, out], [p + "sq"]),
                  helper.make_node("ReduceSum", [p + "sq", const("axis_last", np.array([1], np.int64))],
                                   [p + "sumsq"], keepdims=1),
                  helper.make_node("Sqrt", [p + "sumsq"], [p + "norm"]),
                  helper.make_node("Max", [p + "norm", const("eps", np.array(1e-12, np.float32))], [p + "norm1"]),
                  helper.make_node("Div", [out, p + "norm1"], [p + "normalized"])]
        out = p + "normalized"
    nodes.append(helper.make_node("Identity", [out], [SENTENCE_OUTPUT]))
    g.node.extend(nodes)
    g.output.append(helper.make_tensor_value_info(SENTENCE_OUTPUT, TensorProto.FLOAT, ["batch", hidden_size]))
    return model


def _save(model, path: Path) -> None:
    import onnx

    size = sum(t.ByteSize() for t in model.graph.initializer)
    if size > EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))


def write_graphs(source: Converted, p: Plan, out: Path, model_rel: str = "model.onnx",
                 head_rel: str = "head.onnx", classifier_rel: str = "classifier.onnx",
                 pooling: str | None = None, token_rels: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the encoder (with pooling when asked), the MLM head with fill-mask, the
    classification head with classify and the ner / qa heads with those tasks; return the graph facts.

    Args:
        pooling: in-graph pooling; default: ``p.options.pooling`` (None: none).
    """
    import onnx

    from ..backends.onnx.layout import check_onnx_file, graph_path, read_info

    onnx_dir = source.need("onnx")
    info = read_info(onnx_dir)  # bounded, its shape checked
    key = ENCODER_KEY[p.options.quantize]
    if key not in info["files"] or (("fill-mask" in p.tasks) and "head" not in info["files"]):
        raise ArtifactError(f"{source.path} has no {p.options.quantize} ONNX encoder (or MLM head); re-run "
                            f"encoderkit convert --to onnx --quantize {p.options.quantize}")
    src = graph_path(onnx_dir, info["files"][key])  # named graphs stay inside the directory
    check_onnx_file(src)  # and so does their external data
    model = onnx.load(str(src))  # weights too (external data resolved)
    pooling = pooling or p.options.pooling
    if pooling:
        add_pooling(model, pooling, p.options.normalize, source.spec.hidden_size)
    (out / model_rel).parent.mkdir(parents=True, exist_ok=True)
    _save(model, out / model_rel)
    del model
    head = None
    if "fill-mask" in p.tasks:
        src = graph_path(onnx_dir, info["files"]["head"])
        check_onnx_file(src)
        (out / head_rel).parent.mkdir(parents=True, exist_ok=True)
        _save(onnx.load(str(src)), out / head_rel)
        head = head_rel
    classifier = None
    if "classify" in p.tasks:  # hidden [m, hidden] -> logits [m, labels], fed the [CLS] / <s> rows
        if "classifier" not in info["files"]:
            raise ArtifactError(f"{onnx_dir} has no classifier graph; re-run encoderkit convert --to onnx")
        src = graph_path(onnx_dir, info["files"]["classifier"])
        check_onnx_file(src)
        (out / classifier_rel).parent.mkdir(parents=True, exist_ok=True)
        _save(onnx.load(str(src)), out / classifier_rel)
        classifier = classifier_rel
    token_heads = write_token_heads(onnx_dir, info, p, out, token_rels or {})
    return {"encoder": model_rel, "head": head, "classifier": classifier, **token_heads,
            "source_encoder": info["files"][key]}


# graph role in bundle.json -> (the task that needs it, its head); the file keeps the converted name
TOKEN_GRAPHS = {"token_classification": ("ner", TOKEN_CLASSIFICATION),
                "question_answering": ("qa", QUESTION_ANSWERING)}


def write_token_heads(onnx_dir: Path, info: dict[str, Any], p: Plan, out: Path,
                      rels: dict[str, str]) -> dict[str, str | None]:
    """Copy the ner / qa head graphs (hidden rows [m, hidden] -> logits [m, out], run on every
    real token's row) for the tasks that need them; return {role: bundle path or None}.

    Args:
        rels: role -> path inside the bundle (default: the converted file name).
    Raises:
        ArtifactError: the converted directory lacks the graph (re-run convert).
    """
    import onnx

    written: dict[str, str | None] = {}
    for role, (task, head) in TOKEN_GRAPHS.items():
        written[role] = None
        if task not in p.tasks:
            continue
        key = head_key(head)
        if key not in info["files"]:
            raise ArtifactError(f"{onnx_dir} has no {head} head graph ({key} in onnx_info.json); re-run "
                                "encoderkit convert --to onnx")
        rel = rels.get(role, head_file(head))
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        _save(onnx.load(str(onnx_dir / info["files"][key])), out / rel)
        written[role] = rel
    return written


def token_graphs(graphs: dict[str, Any]) -> dict[str, str]:
    """The ner / qa graph roles bundle.json lists (only those packaged: older runners never see them)."""
    return {role: graphs[role] for role in TOKEN_GRAPHS if graphs.get(role)}


def write_runner(out: Path, engine: str = "onnxruntime") -> None:
    (out / "run.py").write_text(template("run.py"), encoding="utf-8")
    (out / "requirements.txt").write_text("\n".join([PY_REQUIREMENTS[engine], *PY_COMMON_REQUIREMENTS]) + "\n")


def to_ort_format(model: Path, out_dir: Path) -> Path:
    """ONNX Runtime Mobile's .ort flatbuffer of ``model`` (basic optimisations, portable)."""
    tmp = out_dir / ".ort-work"
    tmp.mkdir()
    shutil.copy2(model, tmp / model.name)
    subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(tmp),
                    "--optimization_style", "Fixed"], check=True, capture_output=True)
    ort = next(tmp.glob("*.ort"))
    dst = out_dir / (model.stem + ".ort")
    ort.rename(dst)
    shutil.rmtree(tmp)
    return dst


def package_onnx(source: Converted, out: Path, p: Plan, say) -> dict[str, Any]:
    """Write the onnx bundle into ``out``; return bundle.json's content."""
    say(f"writing the {p.options.quantize if p.options.quantize != 'none' else 'fp32'} encoder"
        + (f" with in-graph {p.options.pooling} pooling" if p.options.pooling else "") + " ...")
    graphs = write_graphs(source, p, out)
    tok = write_tokenizer(source.need("onnx"), out)
    write_runner(out)
    bundle = base_bundle(source, p, engine="onnxruntime", runner="run.py",
                         graphs={"encoder": graphs["encoder"], "head": graphs["head"],
                                 "classifier": graphs["classifier"], **token_graphs(graphs)},
                         pooling_in_graph=bool(p.options.pooling), tokenizer=tok)
    bundle["outputs"] = ["last_hidden_state"] + (["sentence_embedding"] if p.options.pooling else [])
    if p.options.ort_format:
        if (out / "model.onnx.data").exists():
            raise ArtifactError("--ort: the encoder is over 1 GB (external data), which the ORT format cannot hold")
        say("converting to the ORT format ...")
        bundle["ort_format"] = {"file": to_ort_format(out / "model.onnx", out).name}
    say("torch reference outputs on the probe texts ...")
    embed, fill = probe_texts(source.spec, p.tasks, p.max_length)
    probes = reference_outputs(source, p, embed, fill, p.options.pooling or "mean", p.options.normalize)
    bundle = finish(out, bundle, probes, p.options.quantize, say)
    if p.options.ort_format:
        bundle["ort_format"]["bytes"] = bundle["files"][bundle["ort_format"]["file"]]["bytes"]
        from .common import write_bundle_json

        write_bundle_json(out, bundle)
    return bundle
