"""OpenVINO over the onnx format's own files: f32 asked for (its CPU plugin defaults to bf16 where
the CPU has it), the same answers as ONNX Runtime, the CLI, and typed errors. Parity against torch
on every parity checkpoint is in parity_tests/ (the catalog's rows parametrise it)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import openvino  # (the openvino extra is part of `make test`: missing = failing)

import encoderkit
from encoderkit.backends.onnx import openvino as openvino_backend
from encoderkit.backends.onnx.openvino import (OpenVinoBf16Runtime, OpenVinoRuntime, _device_kinds,
                                                openvino_bf16_missing)
from encoderkit.conversion import convert
from encoderkit.core.errors import ArtifactError, InputError, MissingDependencyError, UnsupportedHardwareError
from encoderkit.storage.random_init import init_random

pytestmark = pytest.mark.xdist_group("onnx")

TEXTS = ["The capital of France is <mask>.", "A much longer sentence, padded against the first, ends in <mask>.",
         "<mask> short."]
PLAIN = [t.replace("<mask>", "it") for t in TEXTS]
FP32_ATOL = 1e-4  # the fp32 rows' bound (core.contracts.FP32_ATOL)


def _candidates(answers) -> list[tuple[int, float]]:
    """(token id, score) of every candidate of every mask of every text, in order."""
    return [(c["token"], c["score"]) for text in answers for mask in text for c in mask]


def _worst_relative(got, ref) -> float:
    """Largest relative difference of the candidates' scores. A random model's probabilities are
    ~1/vocab, so an absolute bound says nothing; logits within FP32_ATOL move a softmax
    probability by a factor within exp(+-2 * FP32_ATOL)."""
    return max(abs(x - y) / y for (_, x), (_, y) in zip(got, ref))


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    root = tmp_path_factory.mktemp("openvino")
    init_random(root / "ckpt", "small", seed=11)  # 4 layers, hidden 128
    convert(root / "ckpt", ["onnx"], root / "out")
    return root / "out"


def test_openvino_matches_onnx_runtime_on_padded_batches(small_onnx):
    ov, ort = encoderkit.load(small_onnx, "openvino"), encoderkit.load(small_onnx, "onnx")
    # f32 asked for, whatever the plugin's default on this CPU
    assert ov.encoder._compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
    diffs = {"embed": np.abs(ov.embed(PLAIN) - ort.embed(PLAIN)).max(),
             "hidden layer 2": np.abs(ov.embed(PLAIN, layer=2) - ort.embed(PLAIN, layer=2)).max()}
    a, b = ov.attentions(PLAIN[1]), ort.attentions(PLAIN[1])
    diffs["attentions"] = np.abs(a.probs - b.probs).max()
    assert max(diffs.values()) < FP32_ATOL, diffs
    got, ref = _candidates(ov.fill_mask(TEXTS)), _candidates(ort.fill_mask(TEXTS))
    assert [t for t, _ in got] == [t for t, _ in ref]
    assert _worst_relative(got, ref) < 2 * FP32_ATOL, f"max relative score difference {_worst_relative(got, ref):.2e}"


def test_bf16_computes_in_bf16_where_the_cpu_has_it(small_onnx):
    why = openvino_bf16_missing()
    if why is not None:
        pytest.skip(why)
    bf, ov = encoderkit.load(small_onnx, "openvino-bf16"), encoderkit.load(small_onnx, "openvino")
    assert bf.encoder._compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "bf16"
    diff = np.abs(bf.embed(PLAIN) - ov.embed(PLAIN)).max()
    # bf16 really ran (an f32 run would match to ~1e-6) and stays close (8 mantissa bits)
    assert 1e-4 < diff < 0.05, diff


def test_bf16_is_refused_in_one_line_on_a_cpu_without_it(small_onnx, monkeypatch):
    real = openvino.Core

    class Core(real):  # OpenVINO as it answers on a CPU without bf16 instructions
        def get_property(self, device, name, *args):
            return ["FP32", "INT8"] if name == "OPTIMIZATION_CAPABILITIES" else super().get_property(device, name, *args)

    monkeypatch.setattr(openvino, "Core", Core)
    why = openvino_bf16_missing()
    assert why is not None and "\n" not in why and "openvino" in why
    # loading is refused, not run in f32 under a bf16 name; the f32 row still loads
    with pytest.raises(UnsupportedHardwareError, match="no bf16 support"):
        encoderkit.load(small_onnx, "openvino-bf16")
    assert encoderkit.load(small_onnx, "openvino").embed(PLAIN[:1]).shape[0] == 1


def test_openvino_virtual_devices_over_this_cpu(small_onnx):
    ref = encoderkit.load(small_onnx, "onnx").embed(PLAIN)
    for device in ("AUTO", "HETERO:CPU"):
        got = encoderkit.load(small_onnx, "openvino", device=device).embed(PLAIN)
        assert np.abs(got - ref).max() < FP32_ATOL, (device, np.abs(got - ref).max())
    for device in ("HETERO", "cpu", "", None):  # a virtual device over nothing; names are case-sensitive
        with pytest.raises(InputError, match="choose from CPU"):
            OpenVinoRuntime.load(small_onnx / "onnx", device=device)


def test_device_strings_are_read_against_the_devices_here():
    """OpenVINO's device grammar, judged before compiling: a typo is an InputError naming what is
    here, never OpenVINO's compile error reported as a broken artifact."""
    here = ["CPU", "GPU.0", "GPU.1"]
    ok = {"CPU": {"CPU"}, "GPU": {"GPU"}, "GPU.1": {"GPU"}, "AUTO": {"CPU", "GPU"}, "AUTO:GPU": {"GPU"},
          "AUTO:GPU,CPU": {"GPU", "CPU"}, "AUTO:-CPU": {"GPU"}, "AUTO:-GPU.0": {"CPU", "GPU"},
          "HETERO:GPU.0,CPU": {"GPU", "CPU"}, "MULTI:CPU": {"CPU"}}
    for device, want in ok.items():
        assert _device_kinds(device, here) == want, device
    for device in ("CPU,GPU", "CPU:GPU", ":CPU", "GPU.7", "HETERO", "HETERO:", "HETERO:-CPU", "AUTO:NPU",
                   "AUTO:-CPU,-GPU", "cpu", "FOO:CPU", "", None, 3):
        assert _device_kinds(device, here) is None, device


def test_bf16_machine_check_applies_where_the_cpu_may_run_it(monkeypatch):
    """openvino-bf16 on a CPU without bf16: refused where OpenVINO may put it on the CPU (CPU,
    AUTO, HETERO:GPU,CPU), not for a device list that leaves the CPU out (AUTO:GPU, AUTO:-CPU)."""
    checked = []
    monkeypatch.setattr(openvino_backend, "openvino_bf16_missing", lambda core=None: checked.append(1) or "no bf16")
    rt = object.__new__(OpenVinoBf16Runtime)  # the check alone: this machine has no GPU to load on
    rt.core = None
    here = ["CPU", "GPU.0"]
    for device, refused in (("CPU", True), ("AUTO", True), ("HETERO:GPU,CPU", True), ("AUTO:GPU", False),
                            ("AUTO:-CPU", False)):
        rt.runs_on = _device_kinds(device, here)
        if refused:
            with pytest.raises(UnsupportedHardwareError, match="no bf16"):
                rt.check_machine()
        else:
            rt.check_machine()
    assert len(checked) == 3


def test_cli_fill_mask_with_openvino(small_onnx):
    def run(backend):
        p = subprocess.run([sys.executable, "-m", "encoderkit.cli", "fill-mask", str(small_onnx), "--backend", backend,
                            "--json", TEXTS[0]], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    got, ref = _candidates(run("openvino")), _candidates(run("onnx"))
    assert got and [t for t, _ in got] == [t for t, _ in ref]
    assert _worst_relative(got, ref) < 2 * FP32_ATOL, f"max relative score difference {_worst_relative(got, ref):.2e}"


def test_bad_options_are_typed(small_onnx):
    with pytest.raises(InputError, match="threads"):  # the loader's shared check (loading.check_options)
        encoderkit.load(small_onnx, "openvino", threads=0)
    with pytest.raises(InputError, match="choose from"):
        OpenVinoRuntime.load(small_onnx / "onnx", device="NPU-that-is-not-here")


def test_a_graph_openvino_cannot_read_is_an_artifact_error(small_onnx, tmp_path):
    import onnx
    from onnx import helper

    d = tmp_path / "onnx"
    shutil.copytree(small_onnx / "onnx", d)
    # a valid ONNX file whose operator no engine knows, where the head graph should be
    node = helper.make_node("NoSuchOp", ["hidden"], ["logits"], domain="example.unknown")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("hidden", onnx.TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                      helper.make_opsetid("example.unknown", 1)]), d / "head.onnx")
    # the cause, not OpenVINO's C++ source location lines that open its message
    with pytest.raises(ArtifactError, match=r"OpenVINO cannot load it \(.*No conversion rule.*NoSuchOp") as e:
        OpenVinoRuntime.load(d)
    assert "Exception from" not in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_convert_to_onnx_without_openvino_says_what_it_did_not_validate(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # only encoderkit[onnx] installed
    init_random(tmp_path / "ckpt", "tiny", seed=3)
    report = convert(tmp_path / "ckpt", ["onnx"], tmp_path / "out")
    entry = report["formats"]["onnx"]
    assert "onnx" in entry["parity"] and not {"openvino", "openvino-bf16"} & set(entry["parity"])
    assert set(entry["not_validated"]) == {"openvino", "openvino-bf16"}
    assert all("encoderkit[openvino]" in why for why in entry["not_validated"].values())
    assert "**not validated**: openvino (needs encoderkit[openvino]" in (tmp_path / "out" / "report.md").read_text()


def test_missing_openvino_names_the_extra(small_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ModuleNotFoundError
    with pytest.raises(MissingDependencyError, match=r"encoderkit\[openvino\]"):
        encoderkit.load(small_onnx, "openvino")
    with pytest.raises(MissingDependencyError, match=r"encoderkit\[openvino\]"):
        OpenVinoBf16Runtime.load(small_onnx / "onnx")


def test_an_onnx_runtime_option_is_refused_by_openvino(small_onnx):
    with pytest.raises(InputError, match="backend 'openvino' has no option 'providers'; its options: device, max_tokens"):
        encoderkit.load(small_onnx, "openvino", providers=["CPUExecutionProvider"])
