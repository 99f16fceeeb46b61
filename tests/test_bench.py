"""The benchmark runs end to end on a tiny model and writes well-formed outputs (no timing asserted)."""
from __future__ import annotations

import json
import statistics
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

import encoderkit
from encoderkit.core.errors import InputError
from encoderkit.bench import (CT2_DIRECT, OPTIMUM_SYSTEMS, best_int8, ct2_direct_systems, fit_workload, model_flops,
                              ratios, read_workload, run_bench, target_rows)
from encoderkit.conversion import convert
from encoderkit.storage.random_init import random_spec
from encoderkit.verify.gate import passes
from parity_tests.helpers import fill_mask_agreement, peaked, row_cosines

pytestmark = pytest.mark.xdist_group("bench")


def test_bench_end_to_end(tiny_roberta, tmp_path, monkeypatch):
    model = tmp_path / "conv"
    # a sharpened MLM head: top-1 agreement on a random head's near-uniform scores is a coin toss
    convert(peaked(tiny_roberta, tmp_path / "peaked"), ["safetensors", "onnx"], model, quantize="int8")
    # a variant: the same backend from another conversion of the model, under a label of its own
    dyn = tmp_path / "conv-dynamic"
    convert(tmp_path / "peaked", ["onnx"], dyn, quantize="int8", int8_mode="dynamic")
    out = tmp_path / "bench"
    with pytest.raises(InputError, match="label of its own"):
        run_bench(model, backends=["torch"], tasks=["embed"], out=out, quick=True,
                  variants={"onnx": (dyn, "onnx-int8")})
    # the GEMM peak is measured after a warm-up and after every timed run; every row is held to the
    # highest reading (a peak that drifts 100 -> 250 -> 50 ...: the highest is the machine's capability)
    measured = []

    def peak(**kw):
        measured.append([100.0, 250.0, 50.0, 180.0, 120.0][len(measured) % 5] + len(measured))
        return measured[-1]

    monkeypatch.setattr("encoderkit.bench.run.gemm_peak_gflops", peak)
    run_bench(model, backends=["torch", "onnx", "onnx-int8"], tasks=["fill-mask", "embed"], out=out,
              repeats=2, quick=True, variants={"onnx-int8 [dynamic]": (dyn, "onnx-int8")})
    report = json.loads((out / "bench.json").read_text())
    assert report["gemm_peak_gflops_measured"] == measured and report["gemm_peak_gflops"] == max(measured)
    # one after the warm-up, one per workload after its warm-ups, one after every timed run
    n_runs = sum(len(x["times"]) for res in report["results"].values() for n, x in res.items() if n != "_meta")
    for wname, res in report["results"].items():
        for name in [n for n in res if n != "_meta"]:
            want = res["_meta"]["gflop"] / statistics.median(res[name]["times"]) / max(measured)
            assert res[name]["roofline_fraction"] == pytest.approx(want, rel=1e-9), (wname, name)
    assert len(measured) == 1 + len(report["results"]) + n_runs
    var = report["results"]["embed/corpus"]["onnx-int8 [dynamic]"]
    assert var["backend"] == "onnx-int8" and report["systems"]["onnx-int8 [dynamic]"]["backend"] == "onnx-int8"
    ref_rt = encoderkit.load(model, "torch")
    texts16, _ = fit_workload(read_workload("embed_corpus", ref_rt.tokenizer.mask_token, limit=16),
                              ref_rt.tokenizer, need_mask=False)
    dyn_cos = row_cosines(encoderkit.load(dyn, "onnx-int8").embed(texts16, truncate=True),
                          ref_rt.embed(texts16, truncate=True)).min()
    assert var["accuracy"]["min_cosine"] == pytest.approx(dyn_cos, abs=1e-5) and var["gate"] is not None
    assert report["latency_bs1"]["onnx-int8 [dynamic]"]["backend"] == "onnx-int8"
    del report["results"]["embed/corpus"]["onnx-int8 [dynamic]"]  # the checks below are of the backends
    del report["results"]["fill-mask/short"]["onnx-int8 [dynamic]"]
    del report["results"]["fill-mask/long"]["onnx-int8 [dynamic]"]
    del report["latency_bs1"]["onnx-int8 [dynamic]"]
    assert set(report["results"]) == {"fill-mask/short", "fill-mask/long", "embed/corpus"}
    # the long documents are longer than tiny's 128 positions: cut to fit (the same texts for every
    # system, said in the table) instead of crashing a peer
    long_meta = report["results"]["fill-mask/long"]["_meta"]
    assert long_meta["truncated"] + long_meta["dropped"] > 0 and long_meta["mean_tokens"] <= 128
    assert "cut to the model's length" in (out / "bench.md").read_text()
    short = report["results"]["fill-mask/short"]
    assert {"torch", "onnx", "onnx-int8", "pipeline-bs1", "pipeline-bs8"} <= set(short)
    assert {"torch", "sentence-transformers", "automodel-bs32"} <= set(report["results"]["embed/corpus"])
    for name, x in short.items():
        if name != "_meta":
            assert x["texts_per_s"] > 0 and len(x["times"]) == 2 and 0 < x["roofline_fraction"]
    r = ratios(report, "fill-mask/short")
    assert set(r) == {"torch", "onnx", "onnx-int8"} and all(v > 0 for d in r.values() for v in d.values())
    assert set(report["latency_bs1"]) == {"torch", "onnx", "onnx-int8", "pipeline-bs1"}
    for name, x in report["latency_bs1"].items():  # the percentiles are of the recorded calls
        xs = np.array(x["samples"]) * 1e3
        assert len(xs) == 2 * 4 and x["p99_ms"] == pytest.approx(np.percentile(xs, 99)), name
        assert x["p50_ms"] <= x["p95_ms"] <= x["p99_ms"] <= xs.max() + 1e-9, name
    md = (out / "bench.md").read_text()
    assert "## fill-mask/short" in md and "× peers (same run)" in md and "| p99 ms |" in md
    # the fastest int8 that passed its gate: the backend or its variant, whichever ran faster here
    assert "## Targets" in md and ("fill-mask, best int8 (onnx-int8) / pipeline batch 1" in md
                                   or "fill-mask, best int8 (onnx-int8 [dynamic]) / pipeline batch 1" in md)
    # accuracy of every system against torch in the same run, and the peers that could not run
    # (figures recomputed here from the backends themselves on the same fitted texts: the report's
    # numbers are checked, not re-read)
    emb = report["results"]["embed/corpus"]
    torch_rt = encoderkit.load(model, "torch")
    texts, _ = fit_workload(read_workload("embed_corpus", torch_rt.tokenizer.mask_token, limit=16), torch_rt.tokenizer,
                            need_mask=False)
    want = torch_rt.embed(texts, truncate=True)
    assert emb["torch"]["accuracy"] == {"reference": "torch", "min_cosine": pytest.approx(1.0, abs=1e-6)}
    for name in ("onnx", "onnx-int8"):
        cos = row_cosines(encoderkit.load(model, name).embed(texts, truncate=True), want).min()
        assert emb[name]["accuracy"]["min_cosine"] == pytest.approx(cos, abs=1e-5), name
    assert emb["onnx"]["accuracy"]["min_cosine"] > 0.9999 and emb["onnx"]["gate"] is True
    # sentence-transformers is torch under another API: the same embeddings, not merely similar ones
    # (two unrelated texts already have cosine ~0.93 on this random model)
    assert emb["sentence-transformers"]["accuracy"]["min_cosine"] > 0.9999 and emb["sentence-transformers"]["gate"] is None
    masked, _ = fit_workload(read_workload("short_masked", torch_rt.tokenizer.mask_token, limit=4), torch_rt.tokenizer,
                             need_mask=True)
    top1, top5 = fill_mask_agreement(encoderkit.load(model, "onnx-int8").fill_mask(masked, top_k=5, truncate=True),
                                     torch_rt.fill_mask(masked, top_k=5, truncate=True))
    acc = short["onnx-int8"]["accuracy"]
    assert (acc["top1"], acc["top5"]) == (pytest.approx(top1), pytest.approx(top5))
    limits = encoderkit.backends.catalog.backend("onnx-int8").tolerance
    assert acc["top1"] >= limits.min_top1 and acc["top5"] >= limits.min_top5 and short["onnx-int8"]["gate"] is True
    assert short["pipeline-bs1"]["accuracy"] == {"reference": "torch", "top1": 1.0, "top5": 1.0}
    assert "accuracy vs torch" in md and "min cos" in md
    # no ctranslate2/ in the directory, no optimum venv given: listed with the reason, not silently absent
    assert set(report["skipped"]) >= {*CT2_DIRECT.values(), *OPTIMUM_SYSTEMS}
    assert "convert --to ctranslate2" in report["skipped"]["ctranslate2-direct"]
    assert "make optimum-venv" in report["skipped"]["optimum-int8"]
    assert "Peers not run here: " in md and "ctranslate2-direct-int8 (" in md
    for png in ("throughput.png", "latency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_flops_counts_real_tokens():
    s = random_spec("large")
    # 0.6 GFLOP per token in the encoder (DESIGN.md), 0.1 GFLOP per masked position in the head
    per_token = model_flops(s, [1], 0)
    assert 0.55e9 < per_token < 0.65e9
    assert 0.09e9 < model_flops(s, [1], 1) - per_token < 0.12e9


def test_ct2_direct_peer_embeds_like_our_ctranslate2_backend(tiny_bert, tmp_path):
    from transformers import AutoTokenizer

    model = tmp_path / "conv"
    convert(tiny_bert, ["safetensors", "ctranslate2"], model, quantize="int8")
    skipped: dict[str, str] = {}
    tok = AutoTokenizer.from_pretrained(model / "safetensors")
    peers = {s.name: s for s in ct2_direct_systems(model, tok, skipped)}
    assert set(peers) == set(CT2_DIRECT.values()) and skipped == {}
    texts, _ = fit_workload(read_workload("embed_corpus", "[MASK]", limit=40), encoderkit.load(model, "torch").tokenizer,
                            need_mask=False)
    for variant, backend in (("fp32", "ctranslate2"), ("int8", "ctranslate2-int8")):
        ours = encoderkit.load(model, backend).embed(texts, truncate=True)
        got = peers[CT2_DIRECT[variant]].runners["embed"](texts)  # 40 texts: two fixed batches of 32 and 8
        cos = (ours * got).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(got, axis=1)
        assert got.shape == ours.shape and cos.min() > 0.99999, f"{variant}: min cosine {cos.min()}"


FAKE_OPTIMUM = """#!{python}
# Stands in for optimum's venv python: called as PYTHON optimum_peer.py CKPT --serve --workdir DIR.
import json, sys
from pathlib import Path
import numpy as np
args = sys.argv[1:]
assert args[0].endswith("optimum_peer.py") and args[2] == "--serve", args
if {fail!r}:
    print("optimum.exporters: cannot export this model", file=sys.stderr)
    sys.exit(3)
hidden = json.loads((Path(args[1]) / "config.json").read_text())["hidden_size"]
print(json.dumps({{"ready": True, "systems": {{"optimum-o2": {{"load_s": 1.5, "size_mb": 2.0}},
                                              "optimum-int8": {{"load_s": 1.0, "size_mb": 0.5}}}}}}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    texts = json.loads(Path(req["texts"]).read_text())
    with open({log!r}, "a") as log:
        log.write(req["system"] + " " + str(len(texts)) + chr(10))
    np.save(req["save"], np.ones((len(texts), hidden), np.float32))  # a constant embedding
    print(json.dumps({{"ok": True, "n": len(texts)}}), flush=True)
"""


def _fake_python(tmp_path: Path, fail: bool) -> Path:
    path = tmp_path / ("fail-python" if fail else "fake-python")
    path.write_text(FAKE_OPTIMUM.format(python=sys.executable, fail=fail, log=str(tmp_path / "requests.log")))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_optimum_peer_runs_as_a_subprocess_interleaved_with_the_rest(tiny_bert, tmp_path, monkeypatch):
    model = tmp_path / "conv"
    convert(tiny_bert, ["safetensors", "onnx"], model, quantize="int8")
    monkeypatch.delenv("ENCODERKIT_OPTIMUM_PYTHON", raising=False)
    report = run_bench(model, backends=["torch", "onnx-int8"], tasks=["embed"], out=tmp_path / "b", repeats=2,
                       quick=True, optimum_python=_fake_python(tmp_path, fail=False))
    emb = report["results"]["embed/corpus"]
    assert set(OPTIMUM_SYSTEMS) <= set(emb) and not set(OPTIMUM_SYSTEMS) & set(report["skipped"])
    o2 = report["systems"]["optimum-o2"]
    assert (o2["kind"], o2["load_s"], o2["size_mb"]) == ("peer", 1.5, 2.0)
    # one warm-up (2 texts) and one request per timed repeat (all the texts), for each system
    n, texts = len(emb["torch"]["times"]), emb["_meta"]["texts"]
    log = (tmp_path / "requests.log").read_text().splitlines()
    assert n == 2 and sorted(log) == sorted([f"{s} 2" for s in OPTIMUM_SYSTEMS] + [f"{s} {texts}" for s in OPTIMUM_SYSTEMS] * n)
    # its embeddings (a constant vector) are compared with torch's on the same fitted texts
    rt = encoderkit.load(model, "torch")
    texts, _ = fit_workload(read_workload("embed_corpus", rt.tokenizer.mask_token, limit=16), rt.tokenizer,
                            need_mask=False)
    ref = rt.embed(texts, truncate=True)
    want = (ref.sum(1) / np.linalg.norm(ref, axis=1) / np.sqrt(ref.shape[1])).min()
    assert emb["optimum-int8"]["accuracy"]["min_cosine"] == pytest.approx(want, abs=1e-5)
    names = [row[0] for row in target_rows(report)]
    assert "embed, best int8 (onnx-int8) / optimum-int8" in names
    md = (tmp_path / "b" / "bench.md").read_text()
    assert "| optimum-int8 |" in md and "optimum-o2" not in report["skipped"]


def test_optimum_peer_that_dies_is_listed_as_skipped_with_its_last_words(tiny_bert, tmp_path):
    model = tmp_path / "conv"
    convert(tiny_bert, ["safetensors"], model)
    report = run_bench(model, backends=["torch"], tasks=["embed"], out=tmp_path / "b", repeats=1, quick=True,
                       optimum_python=_fake_python(tmp_path, fail=True))
    for name in OPTIMUM_SYSTEMS:
        assert name not in report["results"]["embed/corpus"]
        assert report["skipped"][name] == ("the optimum peer exited (code 3): optimum.exporters: cannot export "
                                           "this model")
    missing = run_bench(model, backends=["torch"], tasks=["embed"], out=tmp_path / "c", repeats=1, quick=True,
                        optimum_python=tmp_path / "no-such-python")
    assert "does not exist (make optimum-venv)" in missing["skipped"]["optimum-int8"]


def _synthetic(emb: dict, short: dict | None = None, lat: dict | None = None) -> dict:
    def row(tps, **acc):
        gate = acc.pop("gate", None)
        return {"texts_per_s": tps, "roofline_fraction": 0.5, "accuracy": acc, "gate": gate}

    res = {"embed/corpus": {n: row(*v[:1], **v[1]) for n, v in emb.items()}}
    if short:
        res["fill-mask/short"] = {n: row(*v[:1], **v[1]) for n, v in short.items()}
    return {"results": res, "latency_bs1": lat or {}}


def test_target_rows_take_the_fastest_int8_that_passed_its_gate():
    report = _synthetic({
        "torch": (10, {"min_cosine": 1.0, "gate": True}),
        "sentence-transformers": (10, {"min_cosine": 1.0}),
        "onnx-int8": (50, {"min_cosine": 0.95, "gate": False}),  # fastest, but below its gate
        "ctranslate2-int8": (40, {"min_cosine": 0.996, "reference": "torch", "gate": True}),
        "onnx-fp16": (45, {"min_cosine": 0.9999, "gate": True}),  # quantized but not int8
        "optimum-int8": (20, {"min_cosine": 0.94}),
        "ctranslate2-direct-int8": (50, {"min_cosine": 0.996})}, short={
        "pipeline-bs1": (2, {"top1": 1.0, "top5": 1.0}),
        "onnx-int8": (30, {"top1": 0.9, "top5": 0.8, "gate": True}),
        "ctranslate2-int8": (25, {"top1": 0.9, "top5": 0.8, "gate": True})},
        lat={"pipeline-bs1": {"p50_ms": 30.0}, "onnx-int8": {"p50_ms": 12.0}, "ctranslate2-int8": {"p50_ms": 6.0}})
    assert best_int8(report["results"]["embed/corpus"]) == "ctranslate2-int8"
    rows = {name: (value, ok) for name, value, _, _, ok, _ in target_rows(report)}
    assert rows["embed, best int8 (ctranslate2-int8) / sentence-transformers"] == (4.0, True)
    assert rows["embed, best int8 (ctranslate2-int8) / optimum-int8"] == (2.0, True)
    assert rows["embed, best int8 (ctranslate2-int8) / ctranslate2-direct-int8"] == (0.8, False)
    assert rows["embed, best int8 (ctranslate2-int8) min cosine vs torch"] == (0.996, True)
    assert rows["fill-mask, best int8 (onnx-int8) / pipeline batch 1"] == (15.0, True)
    assert rows["latency p50, best int8 (ctranslate2-int8) / pipeline"] == (0.2, True)
    assert not any("onnx-fp16" in name for name in rows)
    # the portable ONNX int8 against CTranslate2's, whatever their gates: embed 50/40, fill-mask 30/25
    assert rows["embed, onnx-int8 / ctranslate2-int8"] == (1.25, True)
    assert rows["fill-mask, onnx-int8 / ctranslate2-int8"] == (1.2, True)


def test_the_onnx_fp32_row_is_held_to_the_roofline_even_when_another_fp32_is_fastest():
    report = _synthetic({"sentence-transformers": (10, {"min_cosine": 1.0})}, short={
        "pipeline-bs1": (2, {"top1": 1.0, "top5": 1.0}),
        "ctranslate2": (9, {"top1": 1.0, "top5": 1.0, "gate": True}),
        "onnx": (8, {"top1": 1.0, "top5": 1.0, "gate": True})})
    short = report["results"]["fill-mask/short"]
    short["ctranslate2"]["roofline_fraction"], short["onnx"]["roofline_fraction"] = 0.8, 0.7
    rows = {name: (value, ok) for name, value, _, _, ok, _ in target_rows(report)}
    assert rows["fill-mask, best fp32 (ctranslate2) fraction of fp32 roofline"] == (0.8, True)
    assert rows["fill-mask, onnx fp32 fraction of fp32 roofline"] == (0.7, False)
    short["onnx"]["texts_per_s"] = 10  # onnx the fastest fp32: one row, not two
    rows = [name for name, *_ in target_rows(report) if "roofline" in name]
    assert rows == ["fill-mask, best fp32 (onnx) fraction of fp32 roofline"]


def test_a_variant_row_counts_as_the_backend_it_runs():
    """A variant (another conversion of the model, under its own label) is an int8 contender when
    the backend it runs is, in throughput and latency alike."""
    report = _synthetic({"sentence-transformers": (10, {"min_cosine": 1.0}),
                         "onnx-int8": (20, {"min_cosine": 0.995, "reference": "torch", "gate": True}),
                         "onnx-int8 [static]": (35, {"min_cosine": 0.995, "reference": "torch", "gate": True})},
                        short={"pipeline-bs1": (2, {"top1": 1.0, "top5": 1.0}),
                               "onnx-int8 [static]": (24, {"top1": 0.9, "top5": 0.9, "gate": True})},
                        lat={"pipeline-bs1": {"p50_ms": 30.0}, "onnx-int8 [static]": {"p50_ms": 6.0}})
    for rows in [*report["results"].values(), report["latency_bs1"]]:  # as run_bench writes a variant's rows
        if "onnx-int8 [static]" in rows:
            rows["onnx-int8 [static]"]["backend"] = "onnx-int8"
    rows = {name: (value, ok) for name, value, _, _, ok, _ in target_rows(report)}
    assert rows["embed, best int8 (onnx-int8 [static]) / sentence-transformers"] == (3.5, True)
    assert rows["fill-mask, best int8 (onnx-int8 [static]) / pipeline batch 1"] == (12.0, True)
    assert rows["latency p50, best int8 (onnx-int8 [static]) / pipeline"] == (0.2, True)


def test_the_gate_holds_every_backend_to_its_figures():
    """fp32 backends too: an fp32 backend whose embeddings drifted (cosine 0.99, garbage on a random
    model is ~0.93) fails; int8 at its thresholds passes and just below fails; not comparable fails."""
    assert passes("onnx", {"min_cosine": 0.999999}) is True
    assert passes("onnx", {"min_cosine": 0.99}) is False
    assert passes("tf", {"top1": 1.0, "top5": 1.0}) is True
    int8 = encoderkit.backends.catalog.backend("onnx-int8").tolerance
    assert passes("onnx-int8", {"top1": int8.min_top1, "top5": int8.min_top5}) is True
    assert passes("onnx-int8", {"top1": int8.min_top1 - 0.01, "top5": 1.0}) is False
    assert passes("onnx-int8", {"min_cosine": int8.min_cosine - 0.001}) is False
    assert passes("onnx-int8", {"min_cosine": float("nan")}) is False
    assert passes("onnx", {"error": "3 masks against 4"}) is False
    assert passes("sentence-transformers", {"min_cosine": 0.5}) is None


def test_target_rows_say_when_no_int8_backend_passed_its_gate():
    report = _synthetic({"sentence-transformers": (10, {"min_cosine": 1.0}),
                         "onnx-int8": (50, {"min_cosine": 0.95, "gate": False}),
                         "optimum-int8": (20, {"min_cosine": 0.94})})
    rows = target_rows(report)
    assert [(r[0], r[4]) for r in rows] == [
        ("embed: an int8 backend passes its accuracy gate (onnx-int8 ran)", False)]


def _optimum_python(tmp_path_factory) -> Path:
    """optimum's venv: $ENCODERKIT_OPTIMUM_PYTHON, the checkout's .venv-optimum, or one built here as
    `make optimum-venv` builds it (CPU torch first, then optimum-onnx[onnxruntime]); a skip saying
    why where it cannot be built (it needs the package index)."""
    import os
    import subprocess
    import venv

    given = os.environ.get("ENCODERKIT_OPTIMUM_PYTHON")
    if given:
        return Path(given)
    local = Path(__file__).resolve().parents[1] / ".venv-optimum" / "bin" / "python"
    if local.is_file():
        return local
    d = tmp_path_factory.mktemp("optimum") / "venv"
    venv.EnvBuilder(with_pip=True).create(d)
    py = d / "bin" / "python"
    for args in (["torch==2.13.0"], ["optimum-onnx[onnxruntime]", "torch==2.13.0"]):
        res = subprocess.run([str(py), "-m", "pip", "install", "-q", *args], capture_output=True, text=True,
                             timeout=1800)
        if res.returncode:
            pytest.skip(f"cannot build optimum's venv here (pip install {' '.join(args)}): {res.stderr[-300:]}")
    return py


@pytest.mark.slow
def test_optimum_peer_for_real(tmp_path, tmp_path_factory):
    """The real optimum_peer.py protocol in optimum's own venv on the real MiniLM (the fake-python
    tests above check the plumbing): both systems run interleaved with ours, and their accuracy
    against torch is what their recipes promise (O2 is fp32; int8 well above the garbage floor)."""
    py = _optimum_python(tmp_path_factory)
    model = tmp_path / "conv"
    convert("minilm", ["safetensors", "onnx"], model, quantize="int8")
    report = run_bench(model, backends=["torch", "onnx-int8"], tasks=["embed"], out=tmp_path / "b", repeats=2,
                       quick=True, optimum_python=py)
    emb = report["results"]["embed/corpus"]
    assert not set(OPTIMUM_SYSTEMS) & set(report["skipped"]), report["skipped"]
    for name in OPTIMUM_SYSTEMS:
        assert len(emb[name]["times"]) == 2 and emb[name]["texts_per_s"] > 0, emb[name]
        assert report["systems"][name]["kind"] == "peer" and report["systems"][name]["size_mb"] > 0
    assert emb["optimum-o2"]["accuracy"]["min_cosine"] > 0.9999, emb["optimum-o2"]["accuracy"]
    assert emb["optimum-int8"]["accuracy"]["min_cosine"] > 0.98, emb["optimum-int8"]["accuracy"]
    assert "| optimum-int8 |" in (tmp_path / "b" / "bench.md").read_text()


def test_the_readme_has_every_block_make_bench_rewrites():
    """`make bench` rewrites marked README blocks; a block renamed or deleted by hand would make it
    fail after an hour of benchmarking."""
    import re

    from benchmarks import make_bench

    readme = make_bench.README.read_text()
    names = set(re.findall(r'replace_block\([^"]*"([\w-]+)"', Path(make_bench.__file__).read_text()))
    assert names == {"bench", "bench-minilm", "similarity"}
    for name in names:
        assert readme.count(f"<!-- {name}:start -->") == 1 and readme.count(f"<!-- {name}:end -->") == 1, name
        assert make_bench.replace_block(readme, name, "X").count("X\n<!-- " + name + ":end -->") == 1


def test_make_bench_keeps_third_party_output_in_its_log(tmp_path):
    """`make bench` runs as the CLI does: our lines on the terminal, exporter/TensorFlow chatter,
    warnings and log records in a log file, shown (its tail) only when the run fails. (A process of
    its own: under pytest sys.stderr is pytest's, not file descriptor 2.)"""
    import subprocess

    script = """
import logging, os, sys, warnings
from benchmarks import make_bench

def run(a):
    print("our line")
    warnings.warn("third-party noise")
    logging.getLogger("somelib").warning("logger noise")
    os.write(2, b"C-level noise\\n")
    if sys.argv[1] == "fail":
        raise RuntimeError("bad")
    return 0

make_bench._main = run
sys.exit(make_bench.main([]))
"""
    root = Path(__file__).resolve().parents[1]
    ok = subprocess.run([sys.executable, "-c", script, "ok"], cwd=root, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout == "our line\n" and ok.stderr == "", (ok.stdout, ok.stderr)
    bad = subprocess.run([sys.executable, "-c", script, "fail"], cwd=root, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "RuntimeError: bad" in bad.stderr, bad.stderr
    assert "last lines of captured third-party output" in bad.stderr and "C-level noise" in bad.stderr, bad.stderr


def test_profile_fp32_counts_every_encoder_matmul_of_the_timed_calls_only(tiny_roberta, tmp_path, monkeypatch):
    """benchmarks/profile_fp32.py: per fill-mask call, ORT's profile holds each layer's four
    projections (QKV, output, FFN in, FFN out) at the workload's real token count, and not the warm
    call's; the MatMul FLOPs equal the encoder's linear FLOPs of those tokens."""
    from benchmarks import profile_fp32

    model = tmp_path / "model"
    convert(tiny_roberta, ["safetensors", "onnx"], model)
    drift = iter([100.0, 120.0, 300.0, 90.0, 110.0])  # the highest reading in the middle of the run
    monkeypatch.setattr("encoderkit.bench.gemm_peak_gflops", lambda **kw: next(drift))
    assert profile_fp32.main([str(model), "--name", "tiny", "--repeats", "2", "--layers", "2",
                              "--out", str(tmp_path / "out")]) == 0
    got = json.loads((tmp_path / "out" / "profile_fp32_tiny.json").read_text())
    spec = encoderkit.load(model, "onnx").spec
    h, i, n, tokens = spec.hidden_size, spec.intermediate_size, spec.num_layers, sum(got["tokens"])
    shapes = {k: v["count_per_call"] for k, v in got["profile"]["matmul"].items()}
    rows: dict = {}  # (K, N) -> rows multiplied per call, over the call's batches
    for k, count in shapes.items():
        m, kk, nn = map(int, k.split("x"))
        rows[(kk, nn)] = rows.get((kk, nn), 0) + m * count
    assert rows == {(h, 3 * h): n * tokens, (h, h): n * tokens, (h, i): n * tokens, (i, h): n * tokens}, shapes
    assert got["matmul_flops_per_call"] == 2 * tokens * n * (4 * h * h + 2 * h * i)
    assert set(got["matmul_rates"]) <= set(shapes) and got["matmul_rates"]
    # a peak after every timed call as well; every call held to the highest measured, as make bench does
    walls, peaks = got["walls_s"], got["peak_gflops"]  # start, after the warm call, after each timed call, end
    assert peaks == [100.0, 120.0, 300.0, 90.0, 110.0] and len(peaks) == len(walls) + 3
    want = [got["flops"] / w / (max(peaks) * 1e9) for w in walls]
    assert got["roofline_fractions"] == pytest.approx(want, rel=1e-12)
    md = (tmp_path / "out" / "profile_fp32_tiny.md").read_text()
    assert f"**{statistics.median(want):.0%} of the roofline**" in md and "| MatMul below the peak" in md
