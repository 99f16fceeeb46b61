"""One frozen record per architecture: everything that differs between RoBERTa, BERT and their kin.

No other module compares architecture names: it reads the fields of the record. A new BERT-family
architecture whose layers are post-LayerNorm BERT layers is one more record in ``ARCHITECTURES``
(XLM-RoBERTa below is exactly that). Core layer: no framework imports.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UnsupportedArchitectureError
from .heads import (CLASSIFICATION, HEADS, MLM, QUESTION_ANSWERING, TOKEN_CLASSIFICATION, Act, Decoder, Linear, Norm,
                    Step, step_tensors)

DEFAULT_ARCH = "roberta"  # what `init-random` builds unless told otherwise


@dataclass(frozen=True)
class SpecialTokens:
    cls: str
    sep: str
    pad: str
    mask: str
    unk: str


@dataclass(frozen=True)
class Architecture:
    """What a converter, runtime or reader needs to know about one ``model_type``.

    Canonical weight names are transformers' PyTorch names: the encoder under ``prefix``, each
    head's tensors at the paths its steps name (``head_steps``).
    """

    name: str  # config.json's model_type
    hf_class_prefix: str  # transformers class names: f"{hf_class_prefix}ForMaskedLM", ...Model
    prefix: str  # tensor-name prefix of the encoder (``roberta.encoder.layer.0...``)
    # RoBERTa numbers positions from pad_token_id + 1, counting real tokens only (so a model with
    # 514 position rows holds 512 tokens and pads sit at pad_token_id); BERT numbers from 0.
    positions_from_pad: bool
    default_pad_token_id: int
    # Whether token_type_ids carry the A/B segment of a pair (BERT: 0/1). RoBERTa has one type and
    # its pair encoding sets them all to 0.
    segment_types: bool
    special: SpecialTokens
    tokenizer_class: str  # tokenizer_config.json's tokenizer_class
    random_tokenizer: str  # "bpe" | "wordpiece": what `init-random` builds for this architecture
    lowercase: bool
    # Each head's steps at this architecture's tensor paths (heads.HEADS names the heads): the same
    # math as transformers' *ForMaskedLM / *ForSequenceClassification / ... heads.
    head_steps: tuple[tuple[str, tuple[Step, ...]], ...] = ()
    # Tensors known and deliberately not used (pooler, next-sentence head), unless they are a part
    # of a head the checkpoint carries (BERT's pooler feeds its classification head).
    ignored: tuple[str, ...] = ()
    # Extra config.json keys transformers expects for this architecture.
    config_extra: tuple[tuple[str, int], ...] = ()

    def hf_class(self, head: str | None) -> str:
        """transformers' class name for a checkpoint with ``head`` (None: the bare *Model)."""
        return f"{self.hf_class_prefix}{HEADS[head].hf_suffix}" if head else self.base_class

    @property
    def masked_lm_class(self) -> str:
        return self.hf_class(MLM)

    @property
    def classification_class(self) -> str:
        return self.hf_class(CLASSIFICATION)

    @property
    def base_class(self) -> str:
        return f"{self.hf_class_prefix}Model"

    def steps(self, head: str) -> tuple[Step, ...]:
        """The steps of ``head`` at this architecture's tensor paths (() when it has none)."""
        return dict(self.head_steps).get(head, ())

    def head_tensors(self, head: str) -> tuple[str, ...]:
        """The tensor names ``head`` owns (PyTorch layout)."""
        return tuple(step_tensors(self.steps(head)))

    @property
    def mlm_head(self) -> str:
        """The MLM head's tensor prefix (``lm_head``, ``cls.predictions``): where its tied decoder sits."""
        return next(s.path for s in self.steps(MLM) if isinstance(s, Decoder))

    def head_modules(self, head: str) -> list[str]:
        """Top-level module names (below the encoder prefix) that hold ``head``'s tensors: RoBERTa's
        classification head is ``classifier``; BERT's is ``pooler`` and ``classifier``."""
        names: list[str] = []
        for t in self.head_tensors(head):
            first = t.removeprefix(self.prefix + ".").split(".")[0]
            if first not in names:
                names.append(first)
        return names

    def position_offset(self, pad_token_id: int) -> int:
        return pad_token_id + 1 if self.positions_from_pad else 0

    def is_ignored(self, tensor: str) -> bool:
        return any(re.match(p, tensor) for p in self.ignored)


_ROBERTA_LIKE = dict(
    prefix="roberta", positions_from_pad=True, default_pad_token_id=1, segment_types=False,
    special=SpecialTokens(cls="<s>", sep="</s>", pad="<pad>", mask="<mask>", unk="<unk>"),
    random_tokenizer="bpe", lowercase=False, ignored=(r"^roberta\.pooler\.",),
    head_steps=(
        (MLM, (Linear("lm_head.dense"), Act("gelu"), Norm("lm_head.layer_norm"), Decoder("lm_head"))),
        (CLASSIFICATION, (Linear("classifier.dense"), Act("tanh"), Linear("classifier.out_proj", "labels"))),
        (TOKEN_CLASSIFICATION, (Linear("classifier", "labels"),)),
        (QUESTION_ANSWERING, (Linear("qa_outputs", "span"),)),
    ),
    config_extra=(("bos_token_id", 0), ("eos_token_id", 2)),
)

ARCHITECTURES: dict[str, Architecture] = {
    a.name: a for a in (
        Architecture(name="roberta", hf_class_prefix="Roberta", tokenizer_class="RobertaTokenizer",
                     **_ROBERTA_LIKE),
        # XLM-RoBERTa is RoBERTa's architecture with another tokenizer (SentencePiece): one record.
        Architecture(name="xlm-roberta", hf_class_prefix="XLMRoberta", tokenizer_class="XLMRobertaTokenizer",
                     **_ROBERTA_LIKE),
        Architecture(
            name="bert", hf_class_prefix="Bert", prefix="bert", positions_from_pad=False,
            default_pad_token_id=0, segment_types=True,
            special=SpecialTokens(cls="[CLS]", sep="[SEP]", pad="[PAD]", mask="[MASK]", unk="[UNK]"),
            tokenizer_class="BertTokenizer", random_tokenizer="wordpiece", lowercase=True,
            head_steps=(
                (MLM, (Linear("cls.predictions.transform.dense"), Act("gelu"),
                       Norm("cls.predictions.transform.LayerNorm"), Decoder("cls.predictions"))),
                # BERT classifies its pooler's output: pooler dense + tanh, then the classifier
                (CLASSIFICATION, (Linear("bert.pooler.dense"), Act("tanh"), Linear("classifier", "labels"))),
                (TOKEN_CLASSIFICATION, (Linear("classifier", "labels"),)),
                (QUESTION_ANSWERING, (Linear("qa_outputs", "span"),)),
            ),
            ignored=(r"^bert\.pooler\.", r"^cls\.seq_relationship\.")),
    )
}


def architecture(name: str, *, source: str = "config.json") -> Architecture:
    """The record for ``model_type`` ``name``.

    Raises:
        UnsupportedArchitectureError: listing the supported names.
    """
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise UnsupportedArchitectureError(
            f"{source}: model_type {name!r} is not supported; supported: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
