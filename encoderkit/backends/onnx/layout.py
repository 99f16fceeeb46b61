"""The ONNX artifact's on-disk layout, shared by the ONNX converter (writes it) and runtime (reads it).

``onnx/onnx_info.json`` maps graph keys to file names:

- ``encoder``       input_ids, attention_mask -> last_hidden_state (fused for ONNX Runtime)
- one graph per head, hidden rows [m, hidden] -> logits [m, out], fed only the rows the head reads
  (``core.heads``): ``head`` (the MLM head, at mask positions), ``classifier`` (sequence
  classification, first-token rows), and for any other head ``<name>_head`` (``head_key``)
- ``analysis``      input_ids, attention_mask -> every hidden state and attention probability
- ``encoder_int8`` / ``encoder_fp16``  the quantized encoders (with ``--quantize``)
- ``analysis_int8`` / ``analysis_fp16``  the analysis graph quantized, so a quantized backend's
  inner layers and attentions are its own (what ``--compare`` in the viewer shows); int8 there is
  dynamic whatever ``--int8-mode`` (``onnx_info.json``'s ``int8_static`` / ``int8_token`` say so)

Weights go to external data (``<graph>.data``, same directory) above ``EXTERNAL_DATA_BYTES``.
"""
from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any

from ...core.errors import ArtifactError
from ...storage.manifest import read_json_bounded

INFO_FILE = "onnx_info.json"
EXTERNAL_DATA_BYTES = 1 << 30  # above this, weights go to a side file (protobuf caps at 2 GB)
# graph key -> default file name
GRAPHS = {"encoder": "encoder.onnx", "head": "head.onnx", "classifier": "classifier.onnx",
          "analysis": "analysis.onnx",
          "encoder_int8": "encoder.int8.onnx", "encoder_fp16": "encoder.fp16.onnx",
          "analysis_int8": "analysis.int8.onnx", "analysis_fp16": "analysis.fp16.onnx"}


# The graph keys of the two heads earlier versions wrote (kept: converted directories stay loadable).
_HEAD_KEYS = {"mlm": "head", "classification": "classifier"}


def head_key(head: str) -> str:
    """The onnx_info.json key of head ``head``'s graph."""
    return _HEAD_KEYS.get(head, head.replace("-", "_") + "_head")


def head_file(head: str) -> str:
    return GRAPHS.get(head_key(head), f"{head}.head.onnx")


def read_info(directory: Path) -> dict[str, Any]:
    """onnx_info.json of an ONNX export directory.

    Raises:
        ArtifactError: unreadable, or not the expected shape.
    """
    path = directory / INFO_FILE
    info = read_json_bounded(path, what=INFO_FILE)
    if not isinstance(info, dict) or not isinstance(info.get("files"), dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in info["files"].items()):
        raise ArtifactError(f"{path}: not an encoderkit ONNX info file; re-run `encoderkit convert`")
    return info


def graph_path(directory: Path, name: str) -> Path:
    """The path of a graph file named in onnx_info.json, required to stay inside ``directory``.

    Raises:
        ArtifactError: the name leaves the directory (absolute, ``..``, or a symlink out).
    """
    root = directory.resolve()
    path = (directory / name)
    if os.path.isabs(name) or root not in path.resolve().parents or path.is_symlink():
        raise ArtifactError(f"{directory / INFO_FILE}: graph {name!r} is outside the model directory "
                            "or a symbolic link; refusing to load it")
    return path


def check_onnx_file(path: Path) -> None:
    """Parse ``path`` (without weights) and check every external-data reference stays inside its dir.

    Raises:
        ArtifactError: missing, not ONNX, or external data missing/outside the model directory.
    """
    import onnx

    if not path.is_file():
        raise ArtifactError(f"{path} is missing; re-run `encoderkit convert --to onnx`")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf/json parse errors of every kind (onnx picks by suffix)
        raise ArtifactError(f"{path}: not a valid ONNX model ({type(e).__name__})") from None
    if not model.graph.node:
        raise ArtifactError(f"{path}: not a valid ONNX model (empty graph)")
    root = path.parent.resolve()
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        if os.path.isabs(location) or root not in target.parents or (root / location).is_symlink():
            raise ArtifactError(f"{path}: tensor {tensor.name} points to external data {location!r} outside "
                                "the model directory; refusing to load it")
        if not target.is_file():
            raise ArtifactError(f"{path}: external data file {location} of tensor {tensor.name} is missing")


def op_counts(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(collections.Counter(n.op_type for n in model.graph.node))
