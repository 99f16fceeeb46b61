"""ModelSpec: everything about an encoder's shape that a converter or runtime needs.

Parsed once from a Hugging Face ``config.json`` so that no other module reads configs. Core layer.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .architectures import Architecture, architecture
from .errors import UnsupportedArchitectureError
from .heads import CLASSIFICATION, HEADS, LABELS, MLM


@dataclass(frozen=True)
class ModelSpec:
    arch: str  # config.json's model_type: a key of architectures.ARCHITECTURES
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_act: str
    pad_token_id: int
    # RoBERTa numbers positions from pad_token_id + 1 (so 514 position rows serve 512 tokens);
    # BERT numbers them from 0.
    position_offset: int
    heads: tuple[str, ...]  # the task heads the checkpoint carries, e.g. ("mlm",); () for a bare encoder
    mask_token: str
    mask_token_id: int
    cls_token_id: int
    sep_token_id: int
    # The label names of a head with labels (sequence or token classification), index = logit row
    # (config.json's id2label); () when the model has no such head.
    labels: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "heads", tuple(self.heads))
        object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def architecture(self) -> Architecture:
        return architecture(self.arch)

    @property
    def prefix(self) -> str:
        return self.architecture.prefix

    @property
    def head_prefix(self) -> str:
        return self.architecture.mlm_head

    @property
    def has_mlm_head(self) -> bool:
        return MLM in self.heads

    @property
    def has_classifier(self) -> bool:
        return CLASSIFICATION in self.heads

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def has_head(self, name: str) -> bool:
        return name in self.heads

    def head_out(self, name: str) -> int:
        """Width of head ``name``'s output per row read (vocabulary, labels, or 2 for a span)."""
        return HEADS[name].out_dim(self.vocab_size, self.num_labels)

    @property
    def bare(self) -> bool:
        """No head at all: a bare *Model, whose tensor names and trees have no encoder prefix level."""
        return not self.heads

    @property
    def max_tokens_per_text(self) -> int:
        """Longest sequence (special tokens included) the position table can hold."""
        return self.max_position_embeddings - self.position_offset

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["heads"] = list(self.heads)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        if "has_mlm_head" in d:  # written by encoderkit 0.1 before heads existed
            d["heads"] = (MLM,) if d.pop("has_mlm_head") else ()
        return cls(**d)


def config_labels(config: dict[str, Any]) -> tuple[str, ...]:
    """Label names from config.json's ``id2label`` (keys "0".."n-1"), else ``num_labels`` x LABEL_i
    (what transformers names them).

    Raises:
        UnsupportedArchitectureError: id2label whose keys are not 0..n-1.
    """
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            by_index = {int(k): str(v) for k, v in id2label.items()}
        except (TypeError, ValueError):
            raise UnsupportedArchitectureError("config.json: id2label keys must be integers") from None
        if sorted(by_index) != list(range(len(by_index))):
            raise UnsupportedArchitectureError("config.json: id2label keys must be 0..n-1")
        return tuple(by_index[i] for i in range(len(by_index)))
    n = int(config.get("num_labels", 2))
    return tuple(f"LABEL_{i}" for i in range(n))


def spec_from_config(config: dict[str, Any], *, heads: tuple[str, ...], mask_token: str,
                     mask_token_id: int, cls_token_id: int, sep_token_id: int,
                     source: str = "config.json") -> ModelSpec:
    """Build a ModelSpec from a parsed HF config.json.

    Raises:
        UnsupportedArchitectureError: model_type has no record in architectures.py, or a field is
            missing/odd.
    """
    model_type = config.get("model_type")
    arch = architecture(model_type, source=source)
    try:
        hidden = int(config["hidden_size"])
        n_heads = int(config["num_attention_heads"])
        pad = int(config.get("pad_token_id", arch.default_pad_token_id))
        act = str(config.get("hidden_act", "gelu"))
        pos_type = config.get("position_embedding_type", "absolute")
        spec = ModelSpec(
            arch=model_type,
            vocab_size=int(config["vocab_size"]),
            hidden_size=hidden,
            num_layers=int(config["num_hidden_layers"]),
            num_heads=n_heads,
            intermediate_size=int(config["intermediate_size"]),
            max_position_embeddings=int(config["max_position_embeddings"]),
            type_vocab_size=int(config.get("type_vocab_size", 2)),
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
            hidden_act=act,
            pad_token_id=pad,
            position_offset=arch.position_offset(pad),
            heads=tuple(heads),
            mask_token=mask_token,
            mask_token_id=mask_token_id,
            cls_token_id=cls_token_id,
            sep_token_id=sep_token_id,
            labels=config_labels(config) if any(HEADS[h].output == LABELS for h in heads) else (),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise UnsupportedArchitectureError(f"{source}: missing or invalid field {e}") from None
    for field_name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                       "max_position_embeddings", "type_vocab_size"):
        if getattr(spec, field_name) < 1:
            raise UnsupportedArchitectureError(
                f"{source}: {field_name} must be a positive integer, got {getattr(spec, field_name)}")
    if not math.isfinite(spec.layer_norm_eps) or spec.layer_norm_eps <= 0:
        raise UnsupportedArchitectureError(
            f"{source}: layer_norm_eps must be a finite positive number, got {spec.layer_norm_eps}")
    if not 0 <= pad < spec.vocab_size:
        raise UnsupportedArchitectureError(
            f"{source}: pad_token_id {pad} is outside the vocabulary of {spec.vocab_size}")
    if spec.max_tokens_per_text < 2:
        raise UnsupportedArchitectureError(
            f"{source}: max_position_embeddings {spec.max_position_embeddings} leaves no room for a text")
    if hidden % n_heads:
        raise UnsupportedArchitectureError(
            f"{source}: hidden_size {hidden} is not divisible by num_attention_heads {n_heads}")
    if act not in ("gelu", "gelu_python"):
        # Every encoder here implements the exact (erf) gelu; tanh approximations would break parity.
        raise UnsupportedArchitectureError(f"{source}: hidden_act {act!r} is not supported (only 'gelu')")
    if pos_type != "absolute":
        raise UnsupportedArchitectureError(
            f"{source}: position_embedding_type {pos_type!r} is not supported (only 'absolute')")
    if not 0 <= mask_token_id < spec.vocab_size:
        raise UnsupportedArchitectureError(
            f"{source}: mask token id {mask_token_id} is outside the vocabulary of {spec.vocab_size}")
    return spec
