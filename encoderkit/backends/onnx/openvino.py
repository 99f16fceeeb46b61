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


def _device_kinds(device: Any, here: list[str]) -> set[str] | None:
    """OpenVINO's device string read against this machine's devices ``here``: the kinds of device
    (``CPU``, ``GPU``, ...) it may run on, or None where it is not a device string of this machine.
    Forms: ``CPU``, ``GPU`` / ``GPU.0`` (a device here), ``AUTO`` (any), ``AUTO:GPU,CPU`` /
    ``HETERO:GPU,CPU`` / ``MULTI:...`` / ``BATCH:GPU`` (over devices here; ``AUTO:-CPU`` excludes one)."""
    if not isinstance(device, str) or not device:
        return None
    kinds = {h.split(".")[0] for h in here}

    def real(name: str) -> bool:  # "GPU" names GPU.0 too; an index must be one of here's
        return name in here or name in kinds

    virtual, sep, rest = device.partition(":")
    if not sep:
        if device == "AUTO":
            return kinds
        return {device.split(".")[0]} if real(device) else None
    if virtual not in _VIRTUAL or not rest:
        return None
    items = rest.split(",")
    excluded = {i[1:] for i in items if i.startswith("-")}
    chosen = {i for i in items if not i.startswith("-")}
    if (virtual != "AUTO" and excluded) or not all(real(d) for d in excluded | chosen):
        return None
    if not chosen:  # AUTO:-CPU: any device here but those
        chosen = {h for h in here if h not in excluded and h.split(".")[0] not in excluded}
    return {d.split(".")[0] for d in chosen} or None


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
        here = list(self.core.available_devices)
        if not here:
            raise InputError("OpenVINO finds no device on this machine (its CPU plugin is missing?): "
                             "reinstall encoderkit[openvino]")
        runs_on = _device_kinds(device, here)
        if runs_on is None:
            raise InputError(f"OpenVINO has no device {device!r} here; choose from {', '.join(here)} "
                             f"(or {', '.join(_VIRTUAL)} over them, e.g. AUTO:{','.join(here)})")
        self.device = device
        self.runs_on = runs_on  # the kinds of device OpenVINO may run it on
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
        if "CPU" in self.runs_on and (why := openvino_bf16_missing(self.core)):
            raise UnsupportedHardwareError(why)


def openvino_bf16_missing(core=None) -> str | None:
    """None where OpenVINO's CPU plugin computes bf16 natively here, else why not, in one line."""
    if "BF16" in (core or _core()).get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return None
    return "OpenVINO reports no bf16 support on this CPU (avx512_bf16/amx_bf16): use openvino or onnx-int8"
