"""ModelSpec: everything about an encoder's shape that a converter or runtime needs.

Parsed once from a Hugging Face ``config.json`` so that no other module reads configs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import UnsupportedArchitectureError

# model_type -> the prefix its *ForMaskedLM state dict uses for the encoder, and the MLM head's
# prefix. Canonical weight names are those of the *ForMaskedLM class.
ARCHITECTURES = {
    "roberta": {"prefix": "roberta", "head": "lm_head"},
    "bert": {"prefix": "bert", "head": "cls.predictions"},
}


@dataclass(frozen=True)
class ModelSpec:
    arch: str  # "roberta" | "bert"
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
    has_mlm_head: bool
    mask_token: str
    mask_token_id: int
    cls_token_id: int
    sep_token_id: int

    @property
    def prefix(self) -> str:
        return ARCHITECTURES[self.arch]["prefix"]

    @property
    def head_prefix(self) -> str:
        return ARCHITECTURES[self.arch]["head"]

    @property
    def max_tokens_per_text(self) -> int:
        """Longest sequence (special tokens included) the position table can hold."""
        return self.max_position_embeddings - self.position_offset

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(**d)


def spec_from_config(config: dict[str, Any], *, has_mlm_head: bool, mask_token: str,
                     mask_token_id: int, cls_token_id: int, sep_token_id: int,
                     source: str = "config.json") -> ModelSpec:
    """Build a ModelSpec from a parsed HF config.json.

    Raises:
        UnsupportedArchitectureError: model_type is not roberta/bert, or a field is missing/odd.
    """
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"{source}: model_type {model_type!r} is not supported; "
            f"supported: {', '.join(sorted(ARCHITECTURES))}")
    try:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        pad = int(config.get("pad_token_id", 1 if model_type == "roberta" else 0))
        act = str(config.get("hidden_act", "gelu"))
        pos_type = config.get("position_embedding_type", "absolute")
        spec = ModelSpec(
            arch=model_type,
            vocab_size=int(config["vocab_size"]),
            hidden_size=hidden,
            num_layers=int(config["num_hidden_layers"]),
            num_heads=heads,
            intermediate_size=int(config["intermediate_size"]),
            max_position_embeddings=int(config["max_position_embeddings"]),
            type_vocab_size=int(config.get("type_vocab_size", 2)),
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
            hidden_act=act,
            pad_token_id=pad,
            position_offset=pad + 1 if model_type == "roberta" else 0,
            has_mlm_head=has_mlm_head,
            mask_token=mask_token,
            mask_token_id=mask_token_id,
            cls_token_id=cls_token_id,
            sep_token_id=sep_token_id,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise UnsupportedArchitectureError(f"{source}: missing or invalid field {e}") from None
    if hidden % heads:
        raise UnsupportedArchitectureError(
            f"{source}: hidden_size {hidden} is not divisible by num_attention_heads {heads}")
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
