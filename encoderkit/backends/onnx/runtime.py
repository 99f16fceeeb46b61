"""ONNX Runtime backend (fp32, int8, fp16 encoders and analysis graphs; the fp32 head)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ...core.errors import ArtifactError, ResourceError
from ..base import EncoderOutput, Runtime, single_segment
from .layout import check_onnx_file, graph_path, head_key, read_info

# Words in ONNX Runtime's load errors that mean the machine ran short, not that the file is bad.
_RESOURCE_WORDS = ("bad_alloc", "Failed to allocate", "out of memory", "pthread", "create thread",
                   "Resource temporarily unavailable", "Cannot allocate memory")

# Lines of an engine's error that only say where in its C++ it was raised (OpenVINO opens every
# message with them), not what is wrong: left out of the one line users read.
_SOURCE_LINE = re.compile(r"^(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:)$")


def engine_message(error: BaseException, limit: int = 300) -> str:
    """An engine's error in one line: its lines that say what is wrong, joined, at most ``limit``
    characters."""
    lines = [ln.strip() for ln in str(error).splitlines()]
    said = " ".join(ln for ln in lines if ln and not _SOURCE_LINE.match(ln)) or type(error).__name__
    return said if len(said) <= limit else said[:limit - 3] + "..."


def ort_session(path: Path, *, threads: int | None = None, spinning: bool = False,
                providers: list[str] | None = None, level: str = "ALL",
                profile_prefix: str | None = None) -> ort.InferenceSession:
    """A session as the onnx backend runs its graphs (the benchmarks and profiles use it too, so
    what they measure is what users run): graph level ``level``, ``threads`` intra-op threads
    (None: ONNX Runtime's choice), spinning off unless asked, ORT's profiler on with
    ``profile_prefix``."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level}")
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        opts.enable_profiling, opts.profile_file_prefix = True, profile_prefix
    opts.log_severity_level = 3
    # The converter writes Sum + LayerNormalization where onnxscript fused
    # SkipLayerNormalization: ORT's CPU kernel for it took 3-5x their time here
    # (export.unfuse_skip_layer_norm); do not let ORT fuse them back.
    return ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"],
                                disabled_optimizers=["SkipLayerNormFusion"])


class OnnxRuntime(Runtime):
    """ONNX Runtime sessions over a ``convert --to onnx`` directory.

    Args (options of ``load``):
        threads: intra-op threads (default: ONNX Runtime's choice, one per physical core).
        spinning: let ONNX Runtime's intra-op threads spin-wait for work between and after runs
            (``session.intra_op.allow_spinning``). Off by default: on a machine whose cores are
            shared (other processes, or other runtimes in one process) spinning threads steal the
            cores the next run needs; with it off, single-text calls measured 0.43-0.52x the p50
            latency and whole workloads 1.13-1.88x the throughput on 2 shared cores
            (benchmarks/results/latency_options.md). Turn it on for a machine
            the process has to itself.
        providers: execution providers; default CUDA when available, else CPU.
        max_tokens: batch token budget.
    """

    name = "onnx"
    engine = "ONNX Runtime"  # named in load errors
    encoder_key = "encoder"

    def __init__(self, directory: Path, *, threads: int | None = None, providers: list[str] | None = None,
                 max_tokens: int = 1024, spinning: bool = False):
        super().__init__(*self.saved_spec_and_tokenizer(directory), max_tokens=max_tokens)
        spec = self.spec
        self.info = read_info(directory)
        self.directory = directory
        self.threads = threads
        self.spinning = bool(spinning)
        available = ort.get_available_providers()
        self.providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        if self.encoder_key not in self.info["files"]:
            raise ArtifactError(f"{directory} has no {self.encoder_key.replace('_', ' ')} model; "
                                f"re-run `encoderkit convert --to onnx --quantize {self.encoder_key.split('_')[-1]}`")
        for key in ("analysis", *(head_key(h) for h in spec.heads)):
            if key not in self.info["files"]:
                raise ArtifactError(f"{directory / 'onnx_info.json'} names no {key} graph; "
                                    "re-run `encoderkit convert --to onnx`")
        self.encoder = self._session(self.info["files"][self.encoder_key], "encoder")
        # one fp32 graph per head, shared by every encoder variant
        self.heads = {h: self._session(self.info["files"][head_key(h)], "head") for h in spec.heads}
        # Exports before token types were a graph input take single-segment input only.
        self.typed = "token_type_ids" in {i.name for i in self.encoder.get_inputs()}
        self._analysis = None

    @classmethod
    def load(cls, directory: Path, **options: Any) -> OnnxRuntime:
        return cls(Path(directory), **options)

    def _session(self, name: str, role: str):
        path = graph_path(self.directory, name)
        check_onnx_file(path)
        try:
            session = self._open(path)
        except Exception as e:  # each engine raises its own error types
            said = engine_message(e)
            if isinstance(e, MemoryError) or any(w in str(e) for w in _RESOURCE_WORDS):
                raise ResourceError(f"{path}: {self.engine} ran out of resources loading it ({said}); free "
                                    "memory or pass fewer --threads") from None
            raise ArtifactError(f"{path}: {self.engine} cannot load it ({said})") from None
        # onnx_info.json may name any graph for any role: its interface must be that role's
        n = self.spec.num_layers
        inputs, outputs = {"encoder": ({"input_ids", "attention_mask"}, 1), "head": ({"hidden"}, 1),
                           "analysis": ({"input_ids", "attention_mask"}, 2 * n + 1)}[role]
        got_in = {i.name for i in session.get_inputs()}
        if role in ("encoder", "analysis"):  # segment-typed architectures (BERT) also take token types
            got_in.discard("token_type_ids")
        if got_in != inputs or len(session.get_outputs()) != outputs:
            raise ArtifactError(f"{path}: not an {role} graph (inputs {sorted(got_in)}, "
                                f"{len(session.get_outputs())} outputs); re-run `encoderkit convert --to onnx`")
        return session

    def _open(self, path: Path) -> ort.InferenceSession:
        """One graph as a session of this runtime's engine (``run``, ``get_inputs``, ``get_outputs``
        as ONNX Runtime's); any error it raises is turned into a typed one by ``_session``."""
        return ort_session(path, threads=self.threads, spinning=self.spinning, providers=self.providers)

    def artifact_bytes(self) -> int:
        keys = [self.encoder_key] + [head_key(h) for h in self.heads]
        paths = [self.directory / self.info["files"][k] for k in keys]
        return sum(p.stat().st_size for p in paths + [p.with_name(p.name + ".data") for p in paths] if p.is_file())

    @property
    def analysis(self) -> ort.InferenceSession:
        if self._analysis is None:
            # the quantized variants' own analysis graph where the export has one (older exports: fp32)
            key = self.encoder_key.replace("encoder", "analysis")
            self._analysis = self._session(self.info["files"].get(key) or self.info["files"]["analysis"], "analysis")
        return self._analysis

    def _feeds(self, input_ids, attention_mask, token_type_ids=None) -> dict[str, np.ndarray]:
        feeds = {"input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
                 "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64)}
        if not self.typed:
            single_segment(self, token_type_ids)
            return feeds
        feeds["token_type_ids"] = (np.zeros_like(feeds["input_ids"]) if token_type_ids is None
                                   else np.ascontiguousarray(token_type_ids, dtype=np.int64))
        return feeds

    def forward(self, input_ids, attention_mask, *, token_type_ids=None, output_hidden_states=False,
                output_attentions=False):
        feeds = self._feeds(input_ids, attention_mask, token_type_ids)
        if not (output_hidden_states or output_attentions):
            (last,) = self.encoder.run(None, feeds)
            return EncoderOutput(last)
        outs = self.analysis.run(None, feeds)
        n = self.spec.num_layers
        hidden, att = tuple(outs[: n + 1]), tuple(outs[n + 1:])
        return EncoderOutput(hidden[-1], hidden if output_hidden_states else None,
                             att if output_attentions else None)

    def hidden_layer(self, input_ids, attention_mask, layer, *, token_type_ids=None):
        if layer == self.spec.num_layers:
            return self.forward(input_ids, attention_mask, token_type_ids=token_type_ids).last_hidden_state
        feeds = self._feeds(input_ids, attention_mask, token_type_ids)
        return self.analysis.run([f"hidden_state_{layer}"], feeds)[0]

    def run_head(self, head, hidden):
        return self.heads[head].run(None, {"hidden": np.ascontiguousarray(hidden, dtype=np.float32)})[0]


class OnnxInt8Runtime(OnnxRuntime):
    """The int8 encoder (as `--int8-mode` wrote it: token by default, dynamic or static) with the fp32 heads."""

    name = "onnx-int8"
    encoder_key = "encoder_int8"


class OnnxFp16Runtime(OnnxRuntime):
    """The fp16 encoder (fp32 inputs/outputs) with the fp32 MLM head."""

    name = "onnx-fp16"
    encoder_key = "encoder_fp16"
