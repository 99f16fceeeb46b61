"""The one runtime interface. Backends implement ``load``, ``forward`` and ``mask_logits``;
tokenization, input policy, batching, pooling, softmax/top-k and decoding live once above them
(``encoderkit/tasks/``), so every backend answers the same way by construction.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..batching import pad_batch, plan_batches
from ..errors import InputError
from ..spec import ModelSpec
from ..tokenization import TextTokenizer


@dataclass(frozen=True)
class EncoderOutput:
    """Numpy outputs of one forward pass (float32)."""

    last_hidden_state: np.ndarray  # [batch, seq, hidden]
    hidden_states: tuple[np.ndarray, ...] | None = None  # num_layers + 1, embeddings first
    attentions: tuple[np.ndarray, ...] | None = None  # num_layers x [batch, heads, seq, seq]


class Runtime(ABC):
    """A loaded model on one backend.

    Args:
        spec: the model's shape.
        tokenizer: the model's tokenizer, with the input policy.
        max_tokens: token budget of one padded batch (batch size x longest sequence).
    """

    name: ClassVar[str]  # its row in registry.BACKENDS

    def __init__(self, spec: ModelSpec, tokenizer: TextTokenizer, *, max_tokens: int = 1024):
        self.spec = spec
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    @staticmethod
    def saved_spec_and_tokenizer(directory: Path) -> tuple[ModelSpec, TextTokenizer]:
        """The ModelSpec and tokenizer an exporter stored beside its artifact."""
        from ..checkpoint import read_saved_spec
        from ..tokenization import load_tokenizer

        spec = read_saved_spec(directory)
        return spec, TextTokenizer(load_tokenizer(directory), spec.max_tokens_per_text, spec.mask_token)

    # ------------------------------------------------------------------ what a backend provides
    @classmethod
    @abstractmethod
    def load(cls, directory: Path, **options: Any) -> Runtime:
        """Load from a directory holding this backend's artifact."""

    @abstractmethod
    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, *,
                token_type_ids: np.ndarray | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> EncoderOutput:
        """Run the encoder on a padded int64 batch (token types: None = all zero)."""

    @abstractmethod
    def mask_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray, mask_index: np.ndarray, *,
                    token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Vocabulary logits [m, vocab] at ``mask_index`` ([m, 2] rows of (batch, position)) only."""

    def hidden_layer(self, input_ids: np.ndarray, attention_mask: np.ndarray, layer: int, *,
                     token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Hidden state of ``layer`` (0 = embeddings, num_layers = last). Backends may specialise."""
        if layer == self.spec.num_layers:
            return self.forward(input_ids, attention_mask, token_type_ids=token_type_ids).last_hidden_state
        out = self.forward(input_ids, attention_mask, token_type_ids=token_type_ids, output_hidden_states=True)
        return out.hidden_states[layer]

    def classify_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                        token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Sequence-classification logits [batch, num_labels] (the head on the [CLS] row).

        Raises:
            InputError: the model has no classification head (or this backend cannot run one).
        """
        self.require_classifier()
        raise InputError(f"backend {self.name} cannot run a classification head")

    def require_classifier(self) -> None:
        """Raises InputError (one line) when the model carries no classification head."""
        if not self.spec.has_classifier:
            raise InputError("this model has no sequence-classification head; fine-tune one "
                             "(encoderkit finetune) or use a *ForSequenceClassification checkpoint")

    def artifact_bytes(self) -> int | None:
        """Bytes of the files this runtime loaded, where they are a part of its format directory
        (e.g. one ONNX encoder of several); None: the whole directory."""
        return None

    def padded_length(self, length: int) -> int:
        """The sequence length a batch whose longest text has ``length`` tokens really runs at.

        Backends that pad to shape buckets (flax) override it, so batches are planned in the
        tokens that are actually computed."""
        return length

    # ------------------------------------------------------------------ shared, above backends
    def batches(self, ids: list[list[int]]):
        """(indices, input_ids, attention_mask) of token-budget batches, padded per batch."""
        for batch in plan_batches([len(x) for x in ids], self.max_tokens, self.padded_length):
            input_ids, attention_mask = pad_batch([ids[i] for i in batch], self.spec.pad_token_id)
            yield batch, input_ids, attention_mask

    # The tasks, written once in encoderkit/tasks/ over forward/mask_logits/hidden_layer.
    def fill_mask(self, texts: Sequence[str], top_k: int = 5, targets: Sequence[str] | None = None,
                  *, truncate: bool = False) -> list[list[list[dict[str, Any]]]]:
        """See ``encoderkit.tasks.fill_mask.fill_mask``."""
        from ..tasks.fill_mask import fill_mask

        return fill_mask(self, texts, top_k, targets, truncate=truncate)

    def embed(self, texts: Sequence[str], pooling: str = "mean", layer: int = -1,
              normalize: bool = False, *, truncate: bool = False) -> np.ndarray:
        """See ``encoderkit.tasks.embed.embed``."""
        from ..tasks.embed import embed

        return embed(self, texts, pooling, layer, normalize, truncate=truncate)

    def classify(self, texts: Sequence[str], pairs: Sequence[str] | None = None, top_k: int | None = 1,
                 *, truncate: bool = False) -> list[list[dict[str, Any]]]:
        """See ``encoderkit.tasks.classify.classify``."""
        from ..tasks.classify import classify

        return classify(self, texts, pairs, top_k, truncate=truncate)

    def attentions(self, text: str, pair: str | None = None, *, truncate: bool = False):
        """See ``encoderkit.tasks.attentions.attentions``: an ``AttentionRecord``."""
        from ..tasks.attentions import attentions

        return attentions(self, text, pair, truncate=truncate)


def single_segment(rt: Runtime, token_type_ids: np.ndarray | None) -> None:
    """Exports written before token types were an input (and architectures without segment
    types) accept only all-zero types.

    Raises:
        InputError: non-zero token types (a BERT text pair) on such a backend.
    """
    if token_type_ids is not None and np.any(np.asarray(token_type_ids) != 0):
        raise InputError(f"backend {rt.name} takes single-segment input only (its export has no "
                         "token_type_ids); re-run `encoderkit convert` to get a pair-capable export")


def gather_rows(hidden: np.ndarray, mask_index: np.ndarray) -> np.ndarray:
    """Hidden vectors [m, h] at (batch, position) rows."""
    return hidden[mask_index[:, 0], mask_index[:, 1]]
