"""Every documented command and flag that no other test ran, once each from the CLI, asserting what it
printed or wrote (issue 27): convert --to all with --no-fuse, --int8-mode dynamic with
--int8-weights s8 (a dynamic-mode flag), and --min-*; static int8 with --int8-calibration
entropy|minmax; info on a converted directory; fill-mask --targets; embed --pooling/--layer;
--debug; --trust-artifact; classify --base; attention --hide-special and --compare; batch
--text-column; finetune (success, --pair-column); bench --task/--repeats. (--allow-pickle from the
CLI: tests/test_formats.py; `make demo`: tests/test_demo.py.)
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import encoderkit
from encoderkit.backends.catalog import BACKENDS, FORMATS
from encoderkit.cli import main
from encoderkit.core.errors import InputError

pytestmark = pytest.mark.xdist_group("cli-documented")
ALL = [f for f in FORMATS if FORMATS[f].in_all]
TEXT = "The river flows through the valley and into the <mask>."


def run(capfd, *argv) -> str:
    """stdout of a successful CLI run."""
    capfd.readouterr()
    rc = main([str(a) for a in argv])
    out = capfd.readouterr()
    assert rc == 0, out.err[-3000:]
    return out.out


@pytest.fixture(scope="module")
def conv_all(tiny_roberta, tmp_path_factory):
    """`convert --to all` with the onnx flags and the validation flags, from the CLI."""
    out = tmp_path_factory.mktemp("cli-all") / "conv"
    rc = main(["convert", str(tiny_roberta), "--to", "all", "--quantize", "int8", "--no-fuse",
               "--int8-mode", "dynamic", "--int8-weights", "s8",
               "--min-top1", "0.5", "--min-top5", "0.5", "--min-cosine", "0.9", "--out", str(out), "--quiet"])
    assert rc == 0
    return out


# --------------------------------------------------------------------------------------- convert
def test_convert_to_all_with_no_fuse_s8_and_min_thresholds(conv_all, tiny_roberta):
    import onnx

    from encoderkit.backends.onnx.layout import op_counts

    manifest = json.loads((conv_all / "manifest.json").read_text())
    assert manifest["formats"] == ALL and manifest["variants"]["onnx"] == ["int8"]
    # --no-fuse: attention left as MatMul/Softmax, no fused Attention operator; int8 from that graph
    counts = op_counts(conv_all / "onnx" / "encoder.onnx")
    assert "Softmax" in counts and not {"Attention", "MultiHeadAttention", "BiasGelu"} & set(counts), counts
    report = (conv_all / "report.md").read_text()
    assert "int8 quantized from: unfused graph" in report
    # --int8-weights s8: the quantized weights are signed int8 (u8 is the default)
    q = onnx.load(str(conv_all / "onnx" / "encoder.int8.onnx"))
    types = {t.data_type for t in q.graph.initializer if len(t.dims) == 2}
    assert onnx.TensorProto.INT8 in types and onnx.TensorProto.UINT8 not in types, types
    # --min-*: the quantized backends were judged against the given thresholds
    for b in ("onnx-int8", "ctranslate2-int8"):
        for words, bound in (("fill-mask top-1 agreement", "0.5"), ("fill-mask top-5 overlap", "0.5"),
                             ("min cosine, mean-pooled", "0.9")):
            row = next(x for x in report.splitlines() if x.startswith(f"| {b} | {words} |"))
            assert row.endswith(f"| ≥ {bound} |"), row
    rt, ref = encoderkit.load(conv_all, "onnx"), encoderkit.load(tiny_roberta)
    assert np.abs(rt.embed([TEXT]) - ref.embed([TEXT])).max() <= 1e-4  # unfused is still the same model


@pytest.mark.parametrize("method", ["entropy", "minmax"])
def test_static_int8_with_each_calibration_method(tiny_roberta, tmp_path, capfd, method):
    from parity_tests.helpers import assert_cosine_above_floor

    out = tmp_path / "conv"
    printed = run(capfd, "convert", tiny_roberta, "--to", "onnx", "--quantize", "int8", "--int8-mode", "static",
                  "--int8-calibration", method, "--int8-max-exclusions", "0", "--out", out, "--quiet")
    assert printed.strip() == f"wrote {out} (report: {out / 'report.md'})"
    rec = json.loads((out / "onnx" / "onnx_info.json").read_text())["int8_static"]
    assert rec["method"] == method and rec["excluded"] == [] and rec["calibration"]["batches"] >= 8
    assert "int8 mode: static" in (out / "report.md").read_text()
    texts = ["The capital of France is <mask>.", "A longer sentence about rivers and valleys.", "Short one."]
    assert_cosine_above_floor(encoderkit.load(out, "onnx-int8").embed(texts), encoderkit.load(tiny_roberta).embed(texts),
                              BACKENDS["onnx-int8"].tolerance.min_cosine, f"static int8 {method}")


def test_info_on_a_converted_directory(conv_all, capfd):
    lines = run(capfd, "info", conv_all).splitlines()
    fields = {ln.split()[0]: ln.split(None, 1)[1] for ln in lines}
    assert fields["kind"] == "converted" and fields["path"] == str(conv_all)
    assert fields["formats"] == str(ALL)
    backends = [b for b in BACKENDS if FORMATS[BACKENDS[b].fmt].in_all and BACKENDS[b].variant in (None, "int8")]
    assert fields["backends"] == str(backends)
    assert fields["num_layers"] == "2" and fields["hidden_size"] == "32"
    as_json = json.loads(run(capfd, "info", conv_all, "--json"))
    assert as_json["backends"] == backends and as_json["kind"] == "converted"


# --------------------------------------------------------------------------------------- tasks
def test_fill_mask_targets(tiny_roberta, capfd):
    rt = encoderkit.load(tiny_roberta)
    full = rt.fill_mask([TEXT], top_k=rt.spec.vocab_size)[0][0]
    targets = [rt.tokenizer.id_to_token(full[k]["token"]) for k in (7, 500)]  # a likely and an unlikely token
    got = json.loads(run(capfd, "fill-mask", tiny_roberta, TEXT, "--targets", *targets, "--json"))[0][0]
    assert [p["token"] for p in got] == [full[7]["token"], full[500]["token"]]  # only those, best first
    assert [p["score"] for p in got] == pytest.approx([full[7]["score"], full[500]["score"]], abs=1e-7)


@pytest.mark.parametrize("pooling,layer", [("max", 1), ("cls", 0), ("mean", 1)])
def test_embed_pooling_and_layer(tiny_roberta, capfd, pooling, layer):
    texts = ["A first text.", "A second, longer text to pad against."]
    got = np.array(json.loads(run(capfd, "embed", tiny_roberta, *texts, "--pooling", pooling, "--layer", layer,
                                  "--json")))
    want = encoderkit.load(tiny_roberta).embed(texts, pooling=pooling, layer=layer)
    assert np.abs(got - want).max() <= 1e-6
    other = encoderkit.load(tiny_roberta).embed(texts)  # the flags changed the answer
    assert np.abs(want - other).max() > 1e-3


def test_debug_shows_the_traceback(tiny_roberta, capfd):
    capfd.readouterr()
    assert main(["embed", str(tiny_roberta), ""]) == 2
    assert "Traceback" not in capfd.readouterr().err
    with pytest.raises(InputError, match=r"texts\[0\] is empty"):  # the exception itself, not one line
        main(["embed", str(tiny_roberta), "", "--debug"])


def test_trust_artifact_skips_only_the_origin_check(conv_all, capfd, monkeypatch):
    from encoderkit.core.errors import ArtifactError

    def refuse(directory, spec):
        raise ArtifactError(f"{directory}: not a SavedModel encoderkit exported (test); refusing to run it; "
                            "pass --trust-artifact if you trust it")

    monkeypatch.setattr("encoderkit.backends.tf.check.check_saved_model", refuse)
    capfd.readouterr()
    assert main(["embed", str(conv_all), "hello", "--backend", "tf", "--json"]) == 2
    assert "not a SavedModel encoderkit exported" in capfd.readouterr().err
    got = json.loads(run(capfd, "embed", conv_all, "hello", "--backend", "tf", "--trust-artifact", "--json"))
    want = encoderkit.load(conv_all, "torch").embed(["hello"])
    assert np.abs(np.array(got) - want).max() <= 1e-4
    # the manifest gate still runs with the flag: a changed file is refused
    (conv_all / "tf" / "config.json").write_text((conv_all / "tf" / "config.json").read_text() + " ")
    try:
        assert main(["embed", str(conv_all), "hello", "--backend", "tf", "--trust-artifact"]) == 2
        assert "tf/config.json" in capfd.readouterr().err
    finally:
        (conv_all / "tf" / "config.json").write_text((conv_all / "tf" / "config.json").read_text()[:-1])


def test_classify_base_runs_a_probe_on_a_converted_model(tiny_roberta, conv_all, tmp_path, capfd):
    from encoderkit.finetune import TOPICS_TRAIN, finetune

    probe = tmp_path / "probe"
    finetune(tiny_roberta, TOPICS_TRAIN, probe, method="probe", quiet=True)
    texts = ["The striker scored twice.", "Heavy rain tomorrow."]
    want = json.loads(run(capfd, "classify", probe, *texts, "--top-k", "4", "--json"))  # its base: the checkpoint
    capfd.readouterr()
    assert main(["classify", str(probe), texts[0], "--backend", "onnx"]) == 2  # the checkpoint has no onnx
    assert "onnx" in capfd.readouterr().err
    got = json.loads(run(capfd, "classify", probe, *texts, "--base", conv_all, "--backend", "onnx", "--top-k", "4",
                         "--json"))
    for g, w in zip(got, want, strict=True):
        assert [p["label"] for p in g] == [p["label"] for p in w]
        assert [p["score"] for p in g] == pytest.approx([p["score"] for p in w], abs=1e-4)


def test_attention_hide_special_and_compare(conv_all, tmp_path, capfd):
    from encoderkit.viewer import decode_page

    page = tmp_path / "a.html"
    run(capfd, "attention", conv_all, "A short text.", "--backend", "torch", "--out", page, "--hide-special")
    d = decode_page(page.read_text())
    assert d["meta"]["hide_special"] is True and d["diff"] is None
    plain = tmp_path / "b.html"
    run(capfd, "attention", conv_all, "A short text.", "--backend", "torch", "--compare", "onnx", "--out", plain)
    d = decode_page(plain.read_text())
    assert d["meta"]["hide_special"] is False and d["meta"]["diff"]["backend"] == "onnx"
    torch_p = encoderkit.load(conv_all, "torch").attentions("A short text.").probs
    onnx_p = encoderkit.load(conv_all, "onnx").attentions("A short text.").probs
    true = onnx_p - torch_p  # B2 minus BACKEND, stored in 127 levels of each layer's max |diff|
    assert np.abs(true).max() > 0 and np.abs(d["diff"] - true).max() <= np.abs(true).max() / 100 + 1e-9


# --------------------------------------------------------------------------------------- apps
def test_batch_text_column(tiny_roberta, tmp_path, capfd):
    from encoderkit.batch.io import read_output

    texts = ["first body", "second, longer body of text", "third"]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"r{i}", "text": "decoy", "body": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out.parquet"
    run(capfd, "embed", tiny_roberta, "--input", inp, "--output", out, "--text-column", "body", "--id-column", "id",
        "--quiet")
    table = read_output(out)
    assert table.column("id").to_pylist() == ["r0", "r1", "r2"]
    got = np.array(table.column("embedding").to_pylist())
    assert np.abs(got - encoderkit.load(tiny_roberta).embed(texts)).max() <= 1e-5  # the body, not "decoy"


def test_finetune_cli_with_a_pair_column(tiny_bert, tmp_path, capfd):
    from encoderkit.storage.checkpoint import load_checkpoint

    rows = [{"premise": f"sentence number {i} about the river", "hypothesis": ("it rains" if i % 2 else "it is dry"),
             "label": "yes" if i % 2 else "no"} for i in range(24)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["finetune", tiny_bert, "--data", data, "--method", "full", "--text-column", "premise",
              "--max-steps", "2", "--dropout", "0", "--quiet"]
    # (in this process the Trainer's progress dicts reach pytest's stdout capture first; a user's
    # stdout has the one line)
    printed = run(capfd, *common, "--pair-column", "hypothesis", "--out", tmp_path / "pair").strip().splitlines()[-1]
    assert printed.startswith(f"wrote {tmp_path / 'pair'} (full") and "train_report.md" in printed
    single = run(capfd, *common, "--out", tmp_path / "single").strip().splitlines()[-1]
    assert single.startswith(f"wrote {tmp_path / 'single'} (full")
    a, b = load_checkpoint(tmp_path / "pair"), load_checkpoint(tmp_path / "single")
    assert a.spec.labels == ("no", "yes") and a.spec.heads == ("classification",)
    # the second text reached training: the same seed and steps without it give other weights
    assert any(np.abs(a.state[k] - b.state[k]).max() > 0 for k in a.state)
    got = json.loads(run(capfd, "classify", tmp_path / "pair", "a premise", "--pair", "it rains", "--json"))
    assert {p["label"] for p in got[0]} <= {"no", "yes"} and len(got) == 1


def test_bench_task_and_repeats(conv_all, tmp_path, capfd):
    out = tmp_path / "bench"
    run(capfd, "bench", conv_all, "--task", "embed", "--repeats", "2", "--quick", "--backends", "torch,onnx",
        "--out", out, "--quiet")
    report = json.loads((out / "bench.json").read_text())
    assert set(report["results"]) == {"embed/corpus"}  # --task: only that task's workloads
    for name in ("torch", "onnx"):
        assert len(report["results"]["embed/corpus"][name]["times"]) == 2  # --repeats
    md = (out / "bench.md").read_text()
    assert "## embed/corpus" in md and "## fill-mask" not in md
