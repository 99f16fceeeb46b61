"""The one runtime interface. Backends implement ``load``, ``forward`` and ``mask_logits``;
tokenization, input policy, batching, pooling, softmax/top-k and decoding live here once, so
every backend answers the same way by construction.
"""
from __future__ import annotations

import warnings
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

POOLINGS = ("mean", "cls", "max")


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

    name: ClassVar[str]
    fmt: ClassVar[str]  # the subdirectory of a `convert` output this backend loads

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
                output_hidden_states: bool = False, output_attentions: bool = False) -> EncoderOutput:
        """Run the encoder on a padded int64 batch."""

    @abstractmethod
    def mask_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                    mask_index: np.ndarray) -> np.ndarray:
        """Vocabulary logits [m, vocab] at ``mask_index`` ([m, 2] rows of (batch, position)) only."""

    def hidden_layer(self, input_ids: np.ndarray, attention_mask: np.ndarray, layer: int) -> np.ndarray:
        """Hidden state of ``layer`` (0 = embeddings, num_layers = last). Backends may specialise."""
        if layer == self.spec.num_layers:
            return self.forward(input_ids, attention_mask).last_hidden_state
        out = self.forward(input_ids, attention_mask, output_hidden_states=True)
        return out.hidden_states[layer]

    def padded_length(self, length: int) -> int:
        """The sequence length a batch whose longest text has ``length`` tokens really runs at.

        Backends that pad to shape buckets (flax) override it, so batches are planned in the
        tokens that are actually computed."""
        return length

    # ------------------------------------------------------------------ shared, above backends
    def _batches(self, ids: list[list[int]]):
        for batch in plan_batches([len(x) for x in ids], self.max_tokens, self.padded_length):
            input_ids, attention_mask = pad_batch([ids[i] for i in batch], self.spec.pad_token_id)
            yield batch, input_ids, attention_mask

    def fill_mask(self, texts: Sequence[str], top_k: int = 5, targets: Sequence[str] | None = None,
                  *, truncate: bool = False) -> list[list[list[dict[str, Any]]]]:
        """Predict every mask token, as transformers' ``pipeline("fill-mask")`` does.

        Returns:
            One entry per text; in it one list per mask (in order); in that the top-k
            ``{"token", "token_str", "score", "sequence"}`` dicts, best first. Scores are the
            softmax over the whole vocabulary (``targets`` select from it without renormalising).
        Raises:
            TypeError: a text is not a str.
            InputError: empty text, no mask token, too long, bad ``top_k`` or ``targets``, or a
                model without an MLM head.
        """
        if not self.spec.has_mlm_head:
            raise InputError("this model has no masked-LM head (e.g. a sentence-embedding BertModel); "
                             "use embed, or a *ForMaskedLM checkpoint for fill-mask")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InputError(f"top_k must be a positive integer, got {top_k!r}")
        target_ids = self._target_ids(targets) if targets is not None else None
        k = min(top_k, len(target_ids)) if target_ids is not None else top_k
        if k > self.spec.vocab_size:
            raise InputError(f"top_k {top_k} exceeds the vocabulary size {self.spec.vocab_size}")
        ids = self.tokenizer.encode(texts, truncate=truncate)
        mask_id = self.spec.mask_token_id
        for i, seq in enumerate(ids):
            if mask_id not in seq:
                what = "was truncated away" if truncate and self.tokenizer.mask_token in texts[i] else "is missing"
                raise InputError(f"texts[{i}]: the mask token {self.tokenizer.mask_token} {what}; "
                                 f"write {self.tokenizer.mask_token} where a word should be predicted")
        results: list[Any] = [None] * len(ids)
        for batch, input_ids, attention_mask in self._batches(ids):
            mask_index = np.argwhere(input_ids == mask_id)
            logits = self.mask_logits(input_ids, attention_mask, mask_index).astype(np.float32)
            probs = _softmax(logits)
            if target_ids is not None:
                probs = probs[:, target_ids]
            for row, (b, pos) in enumerate(mask_index):
                text_i = batch[b]
                if results[text_i] is None:
                    results[text_i] = []
                seq = ids[text_i]
                single = sum(1 for t in seq if t == mask_id) == 1
                p = probs[row]
                top = np.argpartition(-p, k - 1)[:k] if k < p.shape[0] else np.arange(p.shape[0])
                top = top[np.argsort(-p[top], kind="stable")]
                preds = []
                for j in top:
                    token = int(target_ids[j]) if target_ids is not None else int(j)
                    filled = np.array(seq)
                    filled[pos] = token
                    filled = filled[filled != self.spec.pad_token_id]
                    preds.append({"token": token, "token_str": self.tokenizer.decode([token], skip_special_tokens=False),
                                  "score": float(p[j]),
                                  "sequence": self.tokenizer.decode(filled, skip_special_tokens=single)})
                results[text_i].append(preds)
        return results

    def _target_ids(self, targets: Sequence[str]) -> np.ndarray:
        if isinstance(targets, str):
            targets = [targets]
        found = []
        for t in targets:
            if not isinstance(t, str) or not t:
                raise InputError(f"target {t!r} is not a non-empty string")
            tid = self.tokenizer.token_to_id(t)
            if tid is None:  # as the pipeline does: the first token of the target's encoding
                enc = self.tokenizer.encode_plain(t)
                if not enc:
                    warnings.warn(f"target {t!r} encodes to no token; ignoring it", stacklevel=3)
                    continue
                tid = enc[0]
                warnings.warn(f"target {t!r} is not a vocabulary token; using its first token "
                              f"{self.tokenizer.decode([tid], skip_special_tokens=False)!r}", stacklevel=3)
            found.append(tid)
        if not found:
            raise InputError("none of the targets maps to a vocabulary token")
        return np.array(sorted(set(found)), dtype=np.int64)

    def embed(self, texts: Sequence[str], pooling: str = "mean", layer: int = -1,
              normalize: bool = False, *, truncate: bool = False) -> np.ndarray:
        """Pooled sentence embeddings, float32 [n, hidden].

        Args:
            pooling: "mean" or "max" over real tokens (padding excluded), or "cls" (first token).
            layer: hidden layer, 0 = embedding output ... num_layers = last; negatives count back.
            normalize: L2-normalise each embedding.
        Raises:
            InputError: unknown pooling, layer out of range, or bad texts (see ``fill_mask``).
        """
        if pooling not in POOLINGS:
            raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        layer = self._layer_index(layer)
        ids = self.tokenizer.encode(texts, truncate=truncate)
        out = np.zeros((len(ids), self.spec.hidden_size), dtype=np.float32)
        for batch, input_ids, attention_mask in self._batches(ids):
            hidden = self.hidden_layer(input_ids, attention_mask, layer).astype(np.float32)
            out[batch] = pool(hidden, attention_mask, pooling)
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def attentions(self, text: str, *, truncate: bool = False) -> np.ndarray:
        """Attention probabilities of one text, float32 [layers, heads, seq, seq]."""
        (ids,) = self.tokenizer.encode([text], truncate=truncate)
        input_ids, attention_mask = pad_batch([ids], self.spec.pad_token_id)
        out = self.forward(input_ids, attention_mask, output_attentions=True)
        return np.stack([a[0] for a in out.attentions]).astype(np.float32)

    def _layer_index(self, layer: int) -> int:
        n = self.spec.num_layers
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -(n + 1) <= layer <= n:
            raise InputError(f"layer must be in 0..{n} (or -{n + 1}..-1), got {layer!r}")
        return int(layer) % (n + 1)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def pool(hidden: np.ndarray, attention_mask: np.ndarray, pooling: str) -> np.ndarray:
    """Pool [b, t, h] hidden states over real tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    m = attention_mask[:, :, None].astype(bool)
    if pooling == "max":
        return np.where(m, hidden, -np.inf).max(axis=1)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1)


def gather_rows(hidden: np.ndarray, mask_index: np.ndarray) -> np.ndarray:
    """Hidden vectors [m, h] at (batch, position) rows."""
    return hidden[mask_index[:, 0], mask_index[:, 1]]
