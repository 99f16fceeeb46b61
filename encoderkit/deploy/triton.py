"""Target ``triton``: a Triton Inference Server model repository (ONNX Runtime backend).

Layout::

    <name>/config.pbtxt            platform "onnxruntime_onnx", inputs/outputs, max_batch_size,
    <name>/1/model.onnx            dynamic_batching; the encoder (+ sentence_embedding with --pooling)
    <name>-head/config.pbtxt       with fill-mask: the MLM head (hidden rows -> vocabulary logits)
    <name>-head/1/model.onnx
    <name>-classifier/...          with classify: the classification head ([CLS] rows -> label logits)
    <name>-ner/...                 with ner: the token-classification head (every token's row -> label logits)
    <name>-qa/...                  with qa: the question-answering head (every token's row -> start/end logits)
    bundle.json tokenizer.json run.py requirements.txt README.md
                                   at the repository root: Triton only looks at sub-directories, so
                                   these travel with the repository without being taken for models;
                                   `python run.py --self-test` runs the same graphs with ONNX Runtime.

Serve: ``docker run --rm -p 8000:8000 -p 8001:8001 -v $PWD/BUNDLE:/models
nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models``
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import Converted, Plan, base_bundle, finish, probe_texts, reference_outputs, write_tokenizer
from .onnx_bundle import TOKEN_GRAPHS, token_graphs, write_graphs, write_runner

MAX_BATCH_SIZE = 32
# Requests are held up to 1 ms to be batched with others of the same shape (Triton batches
# only equal shapes unless ragged batching is configured).
QUEUE_DELAY_US = 1000


def config_pbtxt(name: str, inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]]) -> str:
    """Triton's text-format ModelConfig (dims exclude the batch dimension; -1 = variable)."""
    def tensors(kind: str, items) -> str:
        body = ",\n".join(f'  {{\n    name: "{n}"\n    data_type: {t}\n    dims: [ {", ".join(map(str, d))} ]\n  }}'
                          for n, t, d in items)
        return f"{kind} [\n{body}\n]\n"

    return (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {MAX_BATCH_SIZE}\n'
            + tensors("input", inputs) + tensors("output", outputs)
            + f"dynamic_batching {{\n  max_queue_delay_microseconds: {QUEUE_DELAY_US}\n}}\n"
            + "instance_group [\n  {\n    kind: KIND_CPU\n    count: 1\n  }\n]\n")


def package_triton(source: Converted, out: Path, p: Plan, say) -> dict[str, Any]:
    """Write the Triton model repository into ``out``; return bundle.json's content."""
    name, h = p.name, source.spec.hidden_size
    say("writing the Triton model repository ...")
    graphs = write_graphs(source, p, out, model_rel=f"{name}/1/model.onnx", head_rel=f"{name}-head/1/model.onnx",
                          classifier_rel=f"{name}-classifier/1/model.onnx",
                          token_rels={role: f"{name}-{task}/1/model.onnx" for role, (task, _) in TOKEN_GRAPHS.items()})
    ids = [("input_ids", "TYPE_INT64", [-1]), ("attention_mask", "TYPE_INT64", [-1])]
    outs = [("last_hidden_state", "TYPE_FP32", [-1, h])]
    if p.options.pooling:
        outs.append(("sentence_embedding", "TYPE_FP32", [h]))
    (out / name / "config.pbtxt").write_text(config_pbtxt(name, ids, outs))
    models = [name]
    if graphs["head"]:
        (out / f"{name}-head" / "config.pbtxt").write_text(
            config_pbtxt(f"{name}-head", [("hidden", "TYPE_FP32", [h])],
                         [("logits", "TYPE_FP32", [source.spec.vocab_size])]))
        models.append(f"{name}-head")
    if graphs["classifier"]:
        (out / f"{name}-classifier" / "config.pbtxt").write_text(
            config_pbtxt(f"{name}-classifier", [("hidden", "TYPE_FP32", [h])],
                         [("logits", "TYPE_FP32", [source.spec.num_labels])]))
        models.append(f"{name}-classifier")
    for role, (task, _) in TOKEN_GRAPHS.items():  # ner: [labels] per row; qa: [2] (start, end) per row
        if graphs[role]:
            width = source.spec.num_labels if task == "ner" else 2
            (out / f"{name}-{task}" / "config.pbtxt").write_text(
                config_pbtxt(f"{name}-{task}", [("hidden", "TYPE_FP32", [h])], [("logits", "TYPE_FP32", [width])]))
            models.append(f"{name}-{task}")
    tok = write_tokenizer(source.need("onnx"), out)
    write_runner(out)
    (out / "README.md").write_text(
        f"# Triton model repository: {', '.join(models)}\n\n"
        "Serve (Triton's container; the models run on its ONNX Runtime backend):\n\n"
        "```\ndocker run --rm -p 8000:8000 -p 8001:8001 -v \"$PWD\":/models "
        "nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models\n```\n\n"
        "Tokenize with `tokenizer.json` (ids padded with the pad id, attention_mask 1 on real tokens); "
        f"`{name}` returns last_hidden_state"
        + (f" and sentence_embedding ({p.options.pooling}{', L2-normalised' if p.options.normalize else ''})"
           if p.options.pooling else "")
        + (f"; `{name}-head` maps the hidden rows at mask positions to vocabulary logits" if graphs["head"] else "")
        + (f"; `{name}-classifier` maps the first ([CLS] / <s>) hidden row of each text to the logits of "
           f"{', '.join(source.spec.labels)} (softmax them; sigmoid for one label)" if graphs["classifier"] else "")
        + (f"; `{name}-ner` maps the hidden row of every real token to the logits of "
           f"{', '.join(source.spec.labels)} (`python run.py ner` groups them into entities)"
           if graphs["token_classification"] else "")
        + (f"; `{name}-qa` maps the hidden row of every real token to its answer start and end logits "
           "(`python run.py qa` windows long contexts and picks the spans)" if graphs["question_answering"] else "")
        + ".\n\nCheck the files without a server: `pip install -r requirements.txt && python run.py --self-test`.\n")
    bundle = base_bundle(source, p, engine="onnxruntime", runner="run.py",
                         graphs={"encoder": graphs["encoder"], "head": graphs["head"],
                                 "classifier": graphs["classifier"], **token_graphs(graphs)},
                         pooling_in_graph=bool(p.options.pooling), tokenizer=tok)
    bundle["triton"] = {"models": models, "max_batch_size": MAX_BATCH_SIZE,
                        "serve": "tritonserver --model-repository=/models"}
    say("torch reference outputs on the probe texts ...")
    embed, fill = probe_texts(source.spec, p.tasks, p.max_length)
    probes = reference_outputs(source, p, embed, fill, p.options.pooling or "mean", p.options.normalize)
    return finish(out, bundle, probes, p.options.quantize, say)
