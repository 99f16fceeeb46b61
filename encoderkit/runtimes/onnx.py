"""ONNX Runtime backend (fp32, int8, fp16 encoders; the fp32 head and analysis graphs)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..errors import ArtifactError
from .base import EncoderOutput, Runtime, gather_rows

INFO_FILE = "onnx_info.json"


def check_onnx_file(path: Path) -> None:
    """Parse ``path`` (without weights) and check every external-data reference stays inside its dir.

    Raises:
        ArtifactError: missing, not ONNX, or external data missing/outside the model directory.
    """
    import onnx
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise ArtifactError(f"{path} is missing; re-run `encoderkit convert --to onnx`")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as e:
        raise ArtifactError(f"{path}: not a valid ONNX model ({type(e).__name__})") from None
    if not model.graph.node:
        raise ArtifactError(f"{path}: not a valid ONNX model (empty graph)")
    root = path.parent.resolve()
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        if os.path.isabs(location) or root not in target.parents:
            raise ArtifactError(f"{path}: tensor {tensor.name} points to external data {location!r} outside "
                                "the model directory; refusing to load it")
        if not target.is_file():
            raise ArtifactError(f"{path}: external data file {location} of tensor {tensor.name} is missing")


class OnnxRuntime(Runtime):
    """ONNX Runtime sessions over a ``convert --to onnx`` directory.

    Args (options of ``load``):
        threads: intra-op threads (default: ONNX Runtime's choice, one per physical core).
        providers: execution providers; default CUDA when available, else CPU.
        max_tokens: batch token budget.
    """

    name = "onnx"
    fmt = "onnx"
    encoder_key = "encoder"

    def __init__(self, directory: Path, *, threads: int | None = None, providers: list[str] | None = None,
                 max_tokens: int = 1024):
        super().__init__(*self.saved_spec_and_tokenizer(directory), max_tokens=max_tokens)
        spec = self.spec
        try:
            self.info = json.loads((directory / INFO_FILE).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ArtifactError(f"{directory / INFO_FILE}: unreadable ({e}); re-run `encoderkit convert`") from None
        self.directory = directory
        self.threads = threads
        available = ort.get_available_providers()
        self.providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        if self.encoder_key not in self.info["files"]:
            raise ArtifactError(f"{directory} has no {self.encoder_key.replace('_', ' ')} model; "
                                f"re-run `encoderkit convert --to onnx --quantize {self.encoder_key.split('_')[-1]}`")
        self.encoder = self._session(self.info["files"][self.encoder_key])
        self.head = self._session(self.info["files"]["head"]) if spec.has_mlm_head else None
        self._analysis = None

    @classmethod
    def load(cls, directory: Path, **options: Any) -> OnnxRuntime:
        return cls(Path(directory), **options)

    def _session(self, name: str) -> ort.InferenceSession:
        path = self.directory / name
        check_onnx_file(path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3
        try:
            return ort.InferenceSession(str(path), opts, providers=self.providers)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types
            raise ArtifactError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]})") from None

    @property
    def analysis(self) -> ort.InferenceSession:
        if self._analysis is None:
            self._analysis = self._session(self.info["files"]["analysis"])
        return self._analysis

    def _feeds(self, input_ids, attention_mask) -> dict[str, np.ndarray]:
        return {"input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
                "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64)}

    def forward(self, input_ids, attention_mask, *, output_hidden_states=False, output_attentions=False):
        if not (output_hidden_states or output_attentions):
            (last,) = self.encoder.run(None, self._feeds(input_ids, attention_mask))
            return EncoderOutput(last)
        outs = self.analysis.run(None, self._feeds(input_ids, attention_mask))
        n = self.spec.num_layers
        hidden, att = tuple(outs[: n + 1]), tuple(outs[n + 1:])
        return EncoderOutput(hidden[-1], hidden if output_hidden_states else None,
                             att if output_attentions else None)

    def hidden_layer(self, input_ids, attention_mask, layer):
        if layer == self.spec.num_layers:
            return self.forward(input_ids, attention_mask).last_hidden_state
        return self.analysis.run([f"hidden_state_{layer}"], self._feeds(input_ids, attention_mask))[0]

    def mask_logits(self, input_ids, attention_mask, mask_index):
        (last,) = self.encoder.run(None, self._feeds(input_ids, attention_mask))
        rows = np.ascontiguousarray(gather_rows(last, mask_index), dtype=np.float32)
        return self.head.run(None, {"hidden": rows})[0]


class OnnxInt8Runtime(OnnxRuntime):
    """The int8 encoder (dynamic quantization) with the fp32 MLM head."""

    name = "onnx-int8"
    encoder_key = "encoder_int8"


class OnnxFp16Runtime(OnnxRuntime):
    """The fp16 encoder (fp32 inputs/outputs) with the fp32 MLM head."""

    name = "onnx-fp16"
    encoder_key = "encoder_fp16"
