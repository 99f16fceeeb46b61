"""The reference backend: Hugging Face transformers' own PyTorch RoBERTa/BERT classes."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import Checkpoint, load_checkpoint
from ..models.torch_model import build_torch_model, encoder_of, mlm_head_of
from .base import EncoderOutput, Runtime


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self, ckpt: Checkpoint, *, threads: int | None = None, max_tokens: int = 1024,
                 device: str | None = None):
        super().__init__(ckpt.spec, ckpt.tokenizer(), max_tokens=max_tokens)
        if threads:
            torch.set_num_threads(threads)
        # fp32 everywhere: torch leaves TF32 matmuls off by default, so CUDA stays within parity
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = build_torch_model(ckpt.spec, ckpt.state).to(self.device)
        self.encoder = encoder_of(self.model, self.spec)
        self.head = mlm_head_of(self.model, self.spec)
        # Attention probabilities need the eager implementation, which is a switch on the shared
        # model: calls that flip it are serialised, so no thread turns it back mid-forward. (Other
        # calls may run eager meanwhile: the same numbers as sdpa, within 1e-6.)
        self._eager = threading.Lock()

    @classmethod
    def load(cls, directory: Path, **options: Any) -> TorchRuntime:
        allow_pickle = options.pop("allow_pickle", False)
        return cls(load_checkpoint(directory, allow_pickle=allow_pickle), **options)

    def _encode(self, input_ids, attention_mask, token_type_ids=None, **flags):
        ids = torch.from_numpy(np.asarray(input_ids, dtype=np.int64)).to(self.device)
        mask = torch.from_numpy(np.asarray(attention_mask, dtype=np.int64)).to(self.device)
        types = torch.zeros_like(ids) if token_type_ids is None else \
            torch.from_numpy(np.asarray(token_type_ids, dtype=np.int64)).to(self.device)
        if not flags.get("output_attentions"):
            return self.encoder(input_ids=ids, attention_mask=mask, token_type_ids=types, **flags)
        with self._eager:  # sdpa does not return probabilities; eager computes the same attention
            self.encoder.set_attn_implementation("eager")
            try:
                return self.encoder(input_ids=ids, attention_mask=mask, token_type_ids=types, **flags)
            finally:
                self.encoder.set_attn_implementation("sdpa")

    @torch.inference_mode()
    def forward(self, input_ids, attention_mask, *, token_type_ids=None, output_hidden_states=False,
                output_attentions=False):
        out = self._encode(input_ids, attention_mask, token_type_ids, output_hidden_states=output_hidden_states,
                           output_attentions=output_attentions)
        to_np = lambda xs: tuple(x.float().cpu().numpy() for x in xs) if xs is not None else None  # noqa: E731
        return EncoderOutput(out.last_hidden_state.float().cpu().numpy(),
                             to_np(out.hidden_states) if output_hidden_states else None,
                             to_np(out.attentions) if output_attentions else None)

    @torch.inference_mode()
    def mask_logits(self, input_ids, attention_mask, mask_index, *, token_type_ids=None):
        hidden = self._encode(input_ids, attention_mask, token_type_ids).last_hidden_state
        rows = torch.from_numpy(np.asarray(mask_index, dtype=np.int64)).to(self.device)
        return self.head(hidden[rows[:, 0], rows[:, 1]]).float().cpu().numpy()

    @torch.inference_mode()
    def classify_logits(self, input_ids, attention_mask, token_type_ids=None):
        self.require_classifier()
        ids = torch.from_numpy(np.asarray(input_ids, dtype=np.int64)).to(self.device)
        mask = torch.from_numpy(np.asarray(attention_mask, dtype=np.int64)).to(self.device)
        types = torch.zeros_like(ids) if token_type_ids is None else \
            torch.from_numpy(np.asarray(token_type_ids, dtype=np.int64)).to(self.device)
        # transformers' own *ForSequenceClassification forward: the reference, as pipeline runs it
        return self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.float().cpu().numpy()
