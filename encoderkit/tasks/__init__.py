"""Tasks, written once over any backend (the ``core.contracts.Encoder`` protocol): tokenization
policy, batching, pooling, top-k, decoding. One module per task, and ``TASKS``: one record per
task, from which the CLI's task subcommands and their flags, the batch jobs' output columns, the
deployment bundles' ``--tasks`` choices and the benchmark's task list are all generated.

A new task = one module here + one ``Task`` row in ``TASKS``; backends do not change. A task
that needs a head names it (``core.heads``); the model must carry that head.
Tasks layer: imports the core layer only (numpy, no framework).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import UnknownNameError
from ..core.heads import CLASSIFICATION, MLM, QUESTION_ANSWERING, TOKEN_CLASSIFICATION
from ..core.spec import ModelSpec
from .attentions import AttentionRecord, attentions
from .classify import classify
from .embed import embed
from .fill_mask import fill_mask
from .kernels import POOLINGS
from .ner import AGGREGATIONS, ner
from .qa import qa

# An output column's type, as data (the batch engine turns it into an Arrow type):
#   "int64" | "float64" | "float32" | "string"; ("list", T); ("vector", "float32", width) a fixed
#   width list; ("struct", ((name, T), ...)).
ColumnType = Any


@dataclass(frozen=True)
class Option:
    """One option of a task: its Python keyword and its CLI flag (argparse settings as data)."""

    dest: str  # the task function's keyword
    flag: str  # "--top-k"
    help: str
    type: Callable[[str], Any] | None = None
    default: Any = None
    choices: tuple[Any, ...] | None = None
    nargs: str | None = None
    flag_only: bool = False  # a store_true flag
    metavar: str | None = None

    def argparse_kwargs(self) -> dict[str, Any]:
        if self.flag_only:
            return {"dest": self.dest, "action": "store_true", "help": self.help}
        kw: dict[str, Any] = {"dest": self.dest, "default": self.default, "help": self.help}
        for key in ("type", "choices", "nargs", "metavar"):
            if getattr(self, key) is not None:
                kw[key] = list(self.choices) if key == "choices" else getattr(self, key)
        return kw


@dataclass(frozen=True)
class Task:
    """One task, as every layer above sees it.

    Attributes:
        function: ``function(rt, texts, **options)`` (``rt`` any backend's runtime).
        head: the head the model must carry (``core.heads``); None: any encoder.
        options: its keyword options (the CLI flags are generated from them).
        columns: ``(spec, options) -> ((name, ColumnType), ...)``: what a batch job writes per row
            beside ``id``.
        to_columns: ``result -> [column values]``: the function's result as those columns.
        probe: ``spec -> input``: one acceptable input, run once before a batch job so that a bad
            option (pooling, layer, top_k, targets) stops it at once instead of rejecting every row.
        to_json: the result as ``--json`` prints it (what bundles' runners print too).
        render: ``(texts, result) -> lines``: the CLI's human-readable output.
        bundle: deployment bundles run it (``encoderkit package --tasks``).
        gate: the accuracy figure a quantized backend is held to on it (verify.metrics names).
        workloads: (name, shipped workload file) pairs the benchmark times it on; () = not benchmarked.
        cli: gets a generated subcommand (attentions has its own: the viewer's ``attention``).
        inputs: what one input is: ("text",), or two texts (("question", "context"): the function
            takes (question, context) pairs; the CLI offers --question/--context, batch jobs two columns).
    """

    name: str
    function: Callable[..., Any]
    summary: str
    head: str | None
    options: tuple[Option, ...]
    columns: Callable[[ModelSpec, dict[str, Any]], tuple[tuple[str, ColumnType], ...]]
    to_columns: Callable[[Any], list[Any]]
    probe: Callable[[ModelSpec], Any]
    to_json: Callable[[Any], Any]
    render: Callable[[Sequence[str], Any], Iterator[str]]
    bundle: bool = False
    gate: tuple[str, ...] = ()
    workloads: tuple[tuple[str, str], ...] = ()
    cli: bool = True
    inputs: tuple[str, ...] = ("text",)
    extra: dict[str, Any] = field(default_factory=dict)

    def run(self, rt: Any, texts: Sequence[str], **options: Any) -> Any:
        return self.function(rt, texts, **options)


# --------------------------------------------------------------------------- per task: output
def _render_fill_mask(texts: Sequence[str], result: Any) -> Iterator[str]:
    for text, per_mask in zip(texts, result):
        yield text
        for m, preds in enumerate(per_mask):
            if len(per_mask) > 1:
                yield f"  mask {m + 1}:"
            for p in preds:
                yield f"  {p['score']:.4f}  {p['token_str']!r:<16} {p['sequence']}"


def _render_embed(texts: Sequence[str], emb: np.ndarray) -> Iterator[str]:
    for text, e in zip(texts, emb):
        head = " ".join(f"{x:+.4f}" for x in e[:6])
        yield f"[{head} ...] dim {e.shape[0]} norm {float((e ** 2).sum() ** 0.5):.4f}  {text}"


def _render_classify(texts: Sequence[str], result: Any) -> Iterator[str]:
    for text, preds in zip(texts, result):
        yield text
        for p in preds:
            yield f"  {p['score']:.4f}  {p['label']}"


def _render_ner(texts: Sequence[str], result: Any) -> Iterator[str]:
    for text, entities in zip(texts, result):
        yield text
        for e in entities:
            label = e.get("entity_group", e.get("entity"))
            yield f"  {e['score']:.4f}  {label:<10} {e['start']:>4}-{e['end']:<4} {text[e['start']:e['end']]!r}"


def _render_qa(pairs: Sequence[Any], result: Any) -> Iterator[str]:
    for (question, _), answers in zip(pairs, result):
        yield question
        for a in answers:
            yield f"  {a['score']:.4f}  {a['start']:>4}-{a['end']:<4} {a['answer']!r}"


def _ner_columns(spec, options):
    if options.get("aggregation", "none") == "none":
        entity = ("struct", (("entity", "string"), ("score", "float64"), ("index", "int64"), ("word", "string"),
                             ("start", "int64"), ("end", "int64")))
    else:
        entity = ("struct", (("entity_group", "string"), ("score", "float64"), ("word", "string"),
                             ("start", "int64"), ("end", "int64")))
    return (("entities", ("list", entity)),)


PREDICTION = ("struct", (("token", "int64"), ("token_str", "string"), ("score", "float64"), ("sequence", "string")))
LABEL_SCORE = ("struct", (("label", "string"), ("score", "float64")))

TASKS: dict[str, Task] = {t.name: t for t in (
    Task("fill-mask", fill_mask, "predict the mask token(s)", MLM,
         options=(Option("top_k", "--top-k", "predictions per mask, best first", type=int, default=5),
                  Option("targets", "--targets", "score only these tokens", nargs="+")),
         # one list per mask, in text order; in it the top-k predictions, best first
         columns=lambda spec, o: (("predictions", ("list", ("list", PREDICTION))),),
         to_columns=lambda result: [result],
         probe=lambda spec: f"hello {spec.mask_token} world",
         to_json=lambda result: result, render=_render_fill_mask,
         bundle=True, gate=("top1", "top5"), workloads=(("short", "short_masked"), ("long", "long_docs"))),
    Task("embed", embed, "pooled sentence embeddings", None,
         options=(Option("pooling", "--pooling", "mean or max over real tokens, or cls (the first token)",
                         default="mean", choices=POOLINGS),
                  Option("layer", "--layer", "hidden layer: 0 = embeddings ... last (-1)", type=int, default=-1),
                  Option("normalize", "--normalize", "L2-normalise each embedding", flag_only=True)),
         columns=lambda spec, o: (("embedding", ("vector", "float32", spec.hidden_size)),),
         to_columns=lambda emb: [np.ascontiguousarray(emb, dtype=np.float32)],
         probe=lambda spec: "hello world",
         to_json=lambda emb: emb.tolist(), render=_render_embed,
         bundle=True, gate=("cosine",), workloads=(("corpus", "embed_corpus"),)),
    Task("classify", classify, "sequence classification (pipeline('text-classification') semantics)",
         CLASSIFICATION,
         options=(Option("pairs", "--pair", "the second text of each pair", nargs="+", metavar="TEXT_B"),
                  Option("top_k", "--top-k", "labels per text, best first", type=int, default=1)),
         # the top-k labels of each text, best first (pipeline("text-classification")'s shape)
         columns=lambda spec, o: (("predictions", ("list", LABEL_SCORE)),),
         to_columns=lambda result: [result],
         probe=lambda spec: "hello world",
         to_json=lambda result: result, render=_render_classify,
         bundle=True, gate=("label_agreement",)),
    Task("ner", ner, "named entities (pipeline('token-classification') semantics)", TOKEN_CLASSIFICATION,
         options=(Option("aggregation", "--aggregation", "none: every token; simple: adjacent tokens of an "
                         "entity grouped; first/average/max: one label per word, then grouped",
                         default="none", choices=AGGREGATIONS),),
         columns=_ner_columns, to_columns=lambda result: [result],
         probe=lambda spec: "Ada Lovelace met Charles Babbage in London.",
         to_json=lambda result: result, render=_render_ner, bundle=True, gate=("tag_agreement",)),
    Task("qa", qa, "extractive question answering (pipeline('question-answering') semantics, transformers 4.57)",
         QUESTION_ANSWERING,
         options=(Option("top_k", "--top-k", "answers per question, best first", type=int, default=1),
                  Option("max_answer_len", "--max-answer-len", "longest answer in tokens", type=int, default=15),
                  Option("doc_stride", "--doc-stride", "tokens neighbouring windows of a long context share "
                         "(default: half the window, at most 128)", type=int),
                  Option("max_seq_len", "--max-seq-len", "tokens per window, question included (default: "
                         "the model's, at most 384)", type=int),
                  Option("handle_impossible", "--handle-impossible", "let the empty answer compete "
                         "(questions the context does not answer)", flag_only=True)),
         columns=lambda spec, o: (("answers", ("list", ("struct", (("score", "float64"), ("start", "int64"),
                                                                   ("end", "int64"), ("answer", "string"))))),),
         to_columns=lambda result: [result],
         probe=lambda spec: ("Who wrote it?", "It was written by Ada."),
         to_json=lambda result: result, render=_render_qa, bundle=True, gate=("span_agreement",),
         inputs=("question", "context")),
    Task("attentions", attentions, "attention probabilities of one text (the viewer's record)", None,
         options=(), columns=lambda spec, o: (), to_columns=lambda result: [], probe=lambda spec: "hello world",
         to_json=lambda rec: {"tokens": list(rec.tokens), "probs": rec.probs.tolist()},
         render=lambda texts, rec: iter(()), cli=False),
)}


def task(name: str) -> Task:
    """The record of task ``name``.

    Raises:
        UnknownNameError: listing the valid names.
    """
    if name not in TASKS:
        raise UnknownNameError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[name]


def bundle_tasks() -> list[str]:
    return [t.name for t in TASKS.values() if t.bundle]


def bench_tasks() -> list[str]:
    return [t.name for t in TASKS.values() if t.workloads]


def dumps(task_name: str, result: Any) -> str:
    """``--json`` output of a task's result (UTF-8 kept as is)."""
    return json.dumps(TASKS[task_name].to_json(result), ensure_ascii=False)


__all__ = ["AttentionRecord", "Option", "TASKS", "Task", "bench_tasks", "bundle_tasks", "dumps", "task"]
