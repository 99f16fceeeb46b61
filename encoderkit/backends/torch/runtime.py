"""The reference backend: Hugging Face transformers' own PyTorch classes."""
from __future__ import annotations

import platform
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.errors import UnsupportedHardwareError
from ...core.heads import HEADS, MASKS, MLM
from ...storage.checkpoint import Checkpoint, load_checkpoint
from ..base import EncoderOutput, Runtime
from ..heads import head_module
from ..transformers_model import build_torch_model, encoder_of


class TorchRuntime(Runtime):
    """transformers' model over a checkpoint (or a convert output's safetensors / pytorch folder).

    Heads run as transformers runs them: the masked-LM head is transformers' own head module on the
    hidden rows at the masks; every other head is the model's own forward (``Head.hf_outputs``).
    """

    name = "torch"
    dtype = torch.float32  # of the weights and of the computation

    def __init__(self, ckpt: Checkpoint, *, threads: int | None = None, max_tokens: int = 1024,
                 device: str | None = None):
        super().__init__(ckpt.spec, ckpt.tokenizer(), max_tokens=max_tokens)
        if threads:
            torch.set_num_threads(threads)
        # fp32 everywhere: torch leaves TF32 matmuls off by default, so CUDA stays within parity
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.check_device()
        self.model = build_torch_model(ckpt.spec, ckpt.state).to(self.device, self.dtype)
        self.encoder = encoder_of(self.model, self.spec)
        self._state = ckpt.state
        self._mask_heads: dict[str, torch.nn.Module] = {}
        # Attention probabilities need the eager implementation, which is a switch on the shared
        # model: calls that flip it are serialised, so no thread turns it back mid-forward. (Other
        # calls may run eager meanwhile: the same numbers as sdpa, within 1e-6.)
        self._eager = threading.Lock()

    def check_device(self) -> None:
        """Refuse a device this runtime's precision cannot run on (fp32 runs everywhere)."""

    @classmethod
    def load(cls, directory: Path, **options: Any) -> TorchRuntime:
        allow_pickle = options.pop("allow_pickle", False)
        return cls(load_checkpoint(directory, allow_pickle=allow_pickle), **options)

    def _tensors(self, input_ids, attention_mask, token_type_ids=None):
        ids = torch.from_numpy(np.asarray(input_ids, dtype=np.int64)).to(self.device)
        mask = torch.from_numpy(np.asarray(attention_mask, dtype=np.int64)).to(self.device)
        types = torch.zeros_like(ids) if token_type_ids is None else \
            torch.from_numpy(np.asarray(token_type_ids, dtype=np.int64)).to(self.device)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def _encode(self, input_ids, attention_mask, token_type_ids=None, **flags):
        feeds = self._tensors(input_ids, attention_mask, token_type_ids)
        if not flags.get("output_attentions"):
            return self.encoder(**feeds, **flags)
        with self._eager:  # sdpa does not return probabilities; eager computes the same attention
            self.encoder.set_attn_implementation("eager")
            try:
                return self.encoder(**feeds, **flags)
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

    def _mask_head(self, head: str) -> torch.nn.Module:
        if head not in self._mask_heads:  # transformers' own MLM head module; any other such head: its steps
            self._mask_heads[head] = (self.model.get_submodule(self.spec.architecture.mlm_head) if head == MLM
                                      else head_module(self.spec, head, self._state).to(self.device, self.dtype))
        return self._mask_heads[head]

    @torch.inference_mode()
    def run_head(self, head, hidden):
        rows = torch.from_numpy(np.ascontiguousarray(hidden, dtype=np.float32)).to(self.device, self.dtype)
        return self._mask_head(head)(rows).float().cpu().numpy()

    @property
    def head(self) -> torch.nn.Module:
        """transformers' own MLM head module (what fill-mask runs at the mask rows)."""
        return self._mask_head(MLM)

    @torch.inference_mode()
    def head_logits(self, head, input_ids, attention_mask, *, rows=None, token_type_ids=None):
        self.require_head(head)
        info = HEADS[head]
        if info.rows == MASKS:  # the head on the mask rows only, never the whole sequence
            return super().head_logits(head, input_ids, attention_mask, rows=rows, token_type_ids=token_type_ids)
        # transformers' own *For<Task> forward: the reference, as its pipelines run it
        out = self.model(**self._tensors(input_ids, attention_mask, token_type_ids))
        parts = [getattr(out, name).float() for name in info.hf_outputs]
        logits = (parts[0] if len(parts) == 1 else torch.stack(parts, dim=-1)).cpu().numpy()
        if logits.ndim == 3:  # per token: zeros at padding, as every backend returns them
            logits = logits * np.asarray(attention_mask, dtype=bool)[:, :, None]
        return logits


def cpu_bf16_missing() -> str | None:
    """None where this CPU has bf16 instructions (x86: avx512_bf16 or amx_bf16; arm64: bf16), else
    why not, in one line. Without /proc/cpuinfo (not Linux), oneDNN's own check decides."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = None
    if info is not None:
        flags: set[str] = set()
        for line in info.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                flags = set(value.split())
                break
        if flags & {"avx512_bf16", "amx_bf16", "bf16"}:
            return None
    elif torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return None
    wanted = "bf16" if platform.machine() in ("aarch64", "arm64") else "avx512_bf16/amx_bf16"
    return f"this CPU has no bf16 instructions ({wanted}): use torch or onnx-int8"


class TorchBf16Runtime(TorchRuntime):
    """The torch runtime with the weights cast to bfloat16: every matmul, the attention and the
    heads compute in bf16 (oneDNN's AVX512-BF16/AMX kernels on the CPU); outputs come back as
    float32 numpy like every backend's. Loads what torch loads; refused on a CPU without bf16
    instructions, where oneDNN would emulate it slower than fp32."""

    name = "torch-bf16"
    dtype = torch.bfloat16

    def check_device(self) -> None:
        if self.device.type == "cpu" and (why := cpu_bf16_missing()):
            raise UnsupportedHardwareError(why)
