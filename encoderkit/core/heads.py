"""Task heads as records: what a head reads and what it outputs, and the few steps of its math.

A head is run the same way on every backend: the encoder's last hidden state, the rows the head
reads (``rows``), then its steps over those rows only. So the masked-LM head projects onto the
vocabulary at the mask positions alone, a sequence classifier reads the first token, a token
classifier every real token. Where each step's tensors live is the architecture's business
(``architectures.Architecture.head_steps``): RoBERTa and BERT put the same math at other paths.

A new head = one ``Head`` record here + its steps in each architecture record; export and every
runtime run it from these records (``backends/heads.py`` in torch, the TF and Flax model files).
Core layer: no framework imports.
"""
from __future__ import annotations

from dataclasses import dataclass

# Which hidden rows a head reads.
MASKS = "masks"  # the mask token positions, given by the caller as (row, position) pairs
FIRST = "first"  # the first token of each row (<s> / [CLS])
EVERY = "every"  # every real (unpadded) token

# What its last step outputs, per row read.
VOCAB = "vocab"  # one logit per vocabulary entry (tied to the word embeddings)
LABELS = "labels"  # one logit per label of the checkpoint (config.json's id2label)
SPAN = "span"  # two logits: the start and the end of an answer span


@dataclass(frozen=True)
class Linear:
    """``x @ weight.T + bias`` with the tensors ``{path}.weight`` [out, in] and ``{path}.bias``.

    ``out``: "hidden" (an inner projection) or the head's output kind (VOCAB is never a Linear:
    see ``Decoder``)."""

    path: str
    out: str = "hidden"


@dataclass(frozen=True)
class Act:
    fn: str  # "gelu" (exact, erf) | "tanh"


@dataclass(frozen=True)
class Norm:
    """LayerNorm with ``{path}.weight`` and ``{path}.bias`` (the model's layer_norm_eps)."""

    path: str


@dataclass(frozen=True)
class Decoder:
    """The tied vocabulary projection: ``x @ word_embeddings.T + {path}.bias``."""

    path: str


Step = Linear | Act | Norm | Decoder


@dataclass(frozen=True)
class Head:
    name: str  # as ModelSpec.heads spells it
    hf_suffix: str  # transformers' class is f"{Architecture.hf_class_prefix}{hf_suffix}"
    rows: str  # MASKS | FIRST | EVERY
    output: str  # VOCAB | LABELS | SPAN
    # transformers' forward outputs that hold this head's logits (stacked on a last axis when several)
    hf_outputs: tuple[str, ...]
    summary: str
    missing: str  # what to tell a user whose model lacks this head

    def out_dim(self, vocab_size: int, num_labels: int) -> int:
        return {VOCAB: vocab_size, LABELS: num_labels, SPAN: 2}[self.output]


MLM = "mlm"
CLASSIFICATION = "classification"
TOKEN_CLASSIFICATION = "token-classification"
QUESTION_ANSWERING = "question-answering"

HEADS: dict[str, Head] = {h.name: h for h in (
    Head(MLM, "ForMaskedLM", MASKS, VOCAB, ("logits",), "masked-LM head (fill-mask)",
         "this model has no masked-LM head (e.g. a sentence-embedding BertModel); use embed, or a "
         "*ForMaskedLM checkpoint for fill-mask"),
    Head(CLASSIFICATION, "ForSequenceClassification", FIRST, LABELS, ("logits",),
         "sequence classification on the first token",
         "this model has no sequence-classification head; fine-tune one (encoderkit finetune) or use a "
         "*ForSequenceClassification checkpoint"),
    Head(TOKEN_CLASSIFICATION, "ForTokenClassification", EVERY, LABELS, ("logits",),
         "token classification (named entities) on every token",
         "this model has no token-classification head; fine-tune one (encoderkit finetune --task "
         "token-classification) or use a *ForTokenClassification checkpoint"),
    Head(QUESTION_ANSWERING, "ForQuestionAnswering", EVERY, SPAN, ("start_logits", "end_logits"),
         "extractive question answering: answer start and end on every token",
         "this model has no question-answering head; fine-tune one (encoderkit finetune --task "
         "question-answering) or use a *ForQuestionAnswering checkpoint"),
)}


def head(name: str) -> Head:
    """The record of head ``name``.

    Raises:
        KeyError: an unknown head (a programming error: user input never names heads directly).
    """
    return HEADS[name]


def step_tensors(steps: tuple[Step, ...]) -> list[str]:
    """The tensor names a head's steps read (the tied decoder's weight is the word embeddings)."""
    names: list[str] = []
    for s in steps:
        if isinstance(s, (Linear, Norm)):
            names += [f"{s.path}.weight", f"{s.path}.bias"]
        elif isinstance(s, Decoder):
            names.append(f"{s.path}.bias")
    return names
