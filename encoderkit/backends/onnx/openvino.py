"""OpenVINO over the same ``convert --to onnx`` files: another engine for the fused fp32 encoder,
the head graphs and the analysis graph (``openvino``), and the same graphs computed in bf16 on CPUs
with bf16 instructions (``openvino-bf16``).

Why a second engine: on this project's AMD EPYC (AVX-512, 2 cores) ONNX Runtime's fp32 GEMMs
(MLAS) are most of a fused-encoder call, and OpenVINO's CPU plugin (oneDNN) ran the very same
roberta-large graph 1.28x faster on [16, 32] batches and 1.09x on [8, 128], identical to 7.5e-6
(one quiet run); through the whole fill-mask/embed path it measured 1.03-1.14x the onnx backend
(README, "OpenVINO"). OpenVINO's CPU plugin defaults to bf16 inference on CPUs with bf16
instructions: the fp32 backend asks for f32 explicitly, so it answers as the ONNX Runtime backend
does (within FP32_ATOL); ``openvino-bf16`` asks for bf16.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import InputError, UnsupportedHardwareError
from ...core.extras import import_optional
from .runtime import OnnxRuntime


class _Port:
    """What the runtime reads of an ONNX Runtime ``NodeArg``: the name."""

    def __init__(self, name: str):
        self.name = name


class OpenVinoGraph:
    """One compiled graph behind ONNX Runtime's session interface (``run``, ``get_inputs``,
    ``get_outputs``), so ``OnnxRuntime``'s logic runs unchanged. One infer request, used under a
    lock (a request is not re-entrant); outputs are copies, as ONNX Runtime's are."""

    def __init__(self, compiled):
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()
        self._inputs = [p.get_any_name() for p in compiled.inputs]
        self._outputs = [p.get_any_name() for p in compiled.outputs]

    def get_inputs(self) -> list[_Port]:
        return [_Port(n) for n in self._inputs]

    def get_outputs(self) -> list[_Port]:
        return [_Port(n) for n in self._outputs]

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            result = self._request.infer(feeds, share_outputs=False).to_tuple()
        if names is None:
            return list(result)
        return [result[self._outputs.index(n)] for n in names]


_VIRTUAL = ("AUTO", "HETERO", "MULTI", "BATCH")  # OpenVINO's devices that schedule over others


def _devices(device: str) -> set[str]:
    """The device names in an OpenVINO device string ("HETERO:GPU.0,CPU" -> HETERO, GPU, CPU)."""
    return {d.split(".")[0] for d in re.split(r"[:,]", device) if d}


def _device_here(device: Any, here: list[str]) -> bool:
    """Whether ``device`` names devices of this machine (``GPU`` or ``GPU.0``), alone or under
    OpenVINO's virtual devices (``AUTO``, ``AUTO:CPU``, ``HETERO:GPU,CPU``)."""
    if not isinstance(device, str) or not device:
        return False
    names = _devices(device)
    real = names - set(_VIRTUAL)
    known = all(d in {h.split(".")[0] for h in here} for d in real)
    return known and (bool(real) or device == "AUTO")


def _core():
    ov = import_optional("openvino", "backend 'openvino'")
    return ov.Core()


class OpenVinoRuntime(OnnxRuntime):
    """The fused fp32 encoder, heads and analysis graph of a ``convert --to onnx`` directory, run by
    OpenVINO's CPU plugin in f32.

    Args (options of ``load``):
        threads: inference threads (default: OpenVINO's choice, one per physical core; OpenVINO
            uses no more than the machine's cores, whatever is asked).
        device: OpenVINO device (default ``CPU``; ``GPU`` for an Intel GPU; ``AUTO`` or
            ``HETERO:GPU,CPU`` over them).
        max_tokens: batch token budget.
    """

    name = "openvino"
    engine = "OpenVINO"
    precision = "f32"

    def __init__(self, directory: Path, *, threads: int | None = None, device: str = "CPU", max_tokens: int = 1024):
        self.core = _core()
        here = self.core.available_devices
        if not _device_here(device, here):
            raise InputError(f"OpenVINO has no device {device!r} here; choose from {', '.join(here)} "
                             f"(or {', '.join(_VIRTUAL)} over them, e.g. AUTO:{here[0]})")
        self.device = device
        self.check_machine()
        super().__init__(directory, threads=threads, max_tokens=max_tokens)

    def check_machine(self) -> None:
        """Refuses what this machine cannot compute as asked (the bf16 row, below)."""

    def _open(self, path: Path) -> OpenVinoGraph:
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        return OpenVinoGraph(self.core.compile_model(self.core.read_model(str(path)), self.device, config))


class OpenVinoBf16Runtime(OpenVinoRuntime):
    """The same graphs computed in bf16 (fp32 inputs and outputs); refused on a CPU whose OpenVINO
    plugin reports no native bf16 (``machine_check``), where it would run f32 under a bf16 name."""

    name = "openvino-bf16"
    precision = "bf16"

    def check_machine(self) -> None:
        if _devices(self.device) & {"CPU", "AUTO"} and (why := openvino_bf16_missing(self.core)):
            raise UnsupportedHardwareError(why)


def openvino_bf16_missing(core=None) -> str | None:
    """None where OpenVINO's CPU plugin computes bf16 natively here, else why not, in one line."""
    if "BF16" in (core or _core()).get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return None
    return "OpenVINO reports no bf16 support on this CPU (avx512_bf16/amx_bf16): use openvino or onnx-int8"
