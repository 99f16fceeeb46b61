"""One frozen record per architecture: everything that differs between RoBERTa, BERT and their kin.

No other module compares architecture names: it reads the fields of the record. A new BERT-family
architecture whose layers are post-LayerNorm BERT layers is one more record in ``ARCHITECTURES``
(XLM-RoBERTa below is exactly that). Ground floor: no framework imports.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UnsupportedArchitectureError

# Head names a ModelSpec can carry in ``heads``.
MLM = "mlm"
# A sequence-classification head (*ForSequenceClassification): [CLS] row -> dense -> tanh -> out.
CLASSIFICATION = "classification"
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

    Canonical weight names are those of the ``*ForMaskedLM`` class: the encoder under
    ``prefix``, the MLM head under ``mlm_head``.
    """

    name: str  # config.json's model_type
    hf_class_prefix: str  # transformers class names: f"{hf_class_prefix}ForMaskedLM", ...Model
    prefix: str  # tensor-name prefix of the encoder (``roberta.encoder.layer.0...``)
    # The MLM head: its tensor prefix, the attribute of *ForMaskedLM that holds it, and where its
    # dense + LayerNorm sit (RoBERTa: directly in the head; BERT: inside a "transform" block).
    mlm_head: str
    mlm_module: str
    mlm_dense: str
    mlm_norm: str
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
    # The sequence-classification head: the [CLS] hidden row -> ``cls_dense`` -> tanh ->
    # ``cls_out`` (RoBERTa: classifier.dense / classifier.out_proj; BERT: its pooler, then
    # classifier). Both are tensor prefixes of the *ForSequenceClassification class.
    cls_dense: str = ""
    cls_out: str = ""
    # Tensors known and deliberately not used (pooler, next-sentence head), unless they are a part
    # of a head the checkpoint carries (BERT's pooler feeds its classification head).
    ignored: tuple[str, ...] = ()
    # Extra config.json keys transformers expects for this architecture.
    config_extra: tuple[tuple[str, int], ...] = ()

    @property
    def masked_lm_class(self) -> str:
        return f"{self.hf_class_prefix}ForMaskedLM"

    @property
    def classification_class(self) -> str:
        return f"{self.hf_class_prefix}ForSequenceClassification"

    @property
    def classification_tensors(self) -> tuple[str, ...]:
        """The tensor names of the classification head (weights and biases, PyTorch layout)."""
        return tuple(f"{m}.{w}" for m in (self.cls_dense, self.cls_out) for w in ("weight", "bias"))

    @property
    def base_class(self) -> str:
        return f"{self.hf_class_prefix}Model"

    @property
    def mlm_transform(self) -> str | None:
        """The sub-block holding the head's dense + LayerNorm ("transform" for BERT), or None."""
        parent = self.mlm_dense.rpartition(".")[0]
        return parent or None

    def position_offset(self, pad_token_id: int) -> int:
        return pad_token_id + 1 if self.positions_from_pad else 0

    def is_ignored(self, tensor: str) -> bool:
        return any(re.match(p, tensor) for p in self.ignored)


_ROBERTA_LIKE = dict(
    prefix="roberta", mlm_head="lm_head", mlm_module="lm_head", mlm_dense="dense", mlm_norm="layer_norm",
    positions_from_pad=True, default_pad_token_id=1, segment_types=False,
    special=SpecialTokens(cls="<s>", sep="</s>", pad="<pad>", mask="<mask>", unk="<unk>"),
    random_tokenizer="bpe", lowercase=False, ignored=(r"^roberta\.pooler\.",),
    cls_dense="classifier.dense", cls_out="classifier.out_proj",
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
            name="bert", hf_class_prefix="Bert", prefix="bert", mlm_head="cls.predictions", mlm_module="cls",
            mlm_dense="transform.dense", mlm_norm="transform.LayerNorm", positions_from_pad=False,
            default_pad_token_id=0, segment_types=True,
            special=SpecialTokens(cls="[CLS]", sep="[SEP]", pad="[PAD]", mask="[MASK]", unk="[UNK]"),
            tokenizer_class="BertTokenizer", random_tokenizer="wordpiece", lowercase=True,
            cls_dense="bert.pooler.dense", cls_out="classifier",
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
