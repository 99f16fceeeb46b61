"""A head's steps (``core.heads``) as a torch module, over the head's own tensors: what the ONNX
exporter traces into a head graph and what the CTranslate2 runtime runs beside its encoder (its
``Encoder`` has no heads). The math is transformers' own: Linear, exact (erf) GELU, tanh,
LayerNorm with the model's eps, and the vocabulary projection tied to the word embeddings.

Backends layer, shared base (any backend folder may import it; torch is a core dependency).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from ..core.heads import Act, Decoder, Linear, Norm, Step
from ..core.spec import ModelSpec

WORD_EMBEDDINGS = "word_embeddings"  # the key under which a head's tensors carry the tied decoder weight


def head_tensors(spec: ModelSpec, head: str, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The canonical tensors head ``head`` reads from ``state`` (the tied decoder's weight under
    ``WORD_EMBEDDINGS``)."""
    out: dict[str, np.ndarray] = {}
    for step in spec.architecture.steps(head):
        if isinstance(step, (Linear, Norm)):
            out[f"{step.path}.weight"] = state[f"{step.path}.weight"]
            out[f"{step.path}.bias"] = state[f"{step.path}.bias"]
        elif isinstance(step, Decoder):
            out[WORD_EMBEDDINGS] = state[f"{spec.prefix}.embeddings.word_embeddings.weight"]
            out[f"{step.path}.bias"] = state[f"{step.path}.bias"]
    return out


class HeadModule(torch.nn.Module):
    """hidden rows [m, hidden] -> logits [m, out]: one head's steps over its tensors."""

    def __init__(self, steps: tuple[Step, ...], tensors: Mapping[str, np.ndarray | torch.Tensor], eps: float):
        super().__init__()
        self.steps, self.eps = steps, eps
        self.params = torch.nn.ParameterDict()
        for name, value in tensors.items():
            t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
            self.params[name.replace(".", "__")] = torch.nn.Parameter(t.float(), requires_grad=False)

    def _t(self, name: str) -> torch.Tensor:
        return self.params[name.replace(".", "__")]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden
        for step in self.steps:
            x = apply_step(step, x, self._t, self.eps)
        return x


def apply_step(step: Step, x: torch.Tensor, tensor: Callable[[str], torch.Tensor], eps: float) -> torch.Tensor:
    if isinstance(step, Linear):
        return F.linear(x, tensor(f"{step.path}.weight"), tensor(f"{step.path}.bias"))
    if isinstance(step, Act):
        return F.gelu(x) if step.fn == "gelu" else torch.tanh(x)
    if isinstance(step, Norm):
        return F.layer_norm(x, x.shape[-1:], tensor(f"{step.path}.weight"), tensor(f"{step.path}.bias"), eps)
    if isinstance(step, Decoder):
        return F.linear(x, tensor(WORD_EMBEDDINGS), tensor(f"{step.path}.bias"))
    raise TypeError(f"unknown head step {step!r}")


def head_module(spec: ModelSpec, head: str, state: Mapping[str, np.ndarray]) -> HeadModule:
    """The torch module of ``head`` holding its tensors from canonical ``state`` (eval mode)."""
    return HeadModule(spec.architecture.steps(head), head_tensors(spec, head, state), spec.layer_norm_eps).eval()


@torch.inference_mode()
def run_head_numpy(module: HeadModule, hidden: np.ndarray) -> np.ndarray:
    return module(torch.from_numpy(np.ascontiguousarray(hidden, dtype=np.float32))).float().numpy()
