"""The attention viewer without a browser: records, token labels, the page's embedded data, the CLI.

Browser behaviour (clicks, hovers, requests, screenshots) is in test_viewer_browser.py.
"""
from __future__ import annotations

import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import encoderkit
from encoderkit.cli import main
from encoderkit.core.errors import InputError
from encoderkit.viewer import _data, attention_record, decode_page, render
from encoderkit.viewer.synthetic import synthetic_record

REPO = Path(__file__).resolve().parents[1]
TEXT = "The café in Zürich is <mask>."


@pytest.fixture(scope="module")
def torch_rt(tiny_roberta):
    return encoderkit.load(tiny_roberta)


def test_byte_level_tokens_read_as_text():
    assert _data.is_byte_level(("<s>", "Ġworld", "</s>"))
    assert not _data.is_byte_level(("[CLS]", "hello", "##ing", "café", "[SEP]"))
    assert _data.display_token("Ġworld", True) == "␣world"
    assert _data.display_token("Ã©", True) == "é"  # two byte-level characters, one UTF-8 character
    assert _data.display_token("ĠZÃ¼rich", True) == "␣Zürich"
    assert _data.display_token("Ã", True) == "<0xC3>"  # half of a split character stays visible
    assert _data.display_token("Ċ", True) == "↵"
    assert _data.display_token("<s>", True) == "<s>"
    assert _data.display_token("##ing", False) == "##ing"


def test_record_equals_runtime_attentions(torch_rt):
    rec = attention_record(torch_rt, TEXT)
    want = torch_rt.attentions(TEXT).probs
    assert rec.probs.dtype == np.float32 and rec.probs.shape == want.shape == (2, 4, len(rec.tokens), len(rec.tokens))
    np.testing.assert_array_equal(rec.probs, want)
    assert rec.tokens[0] == "<s>" and rec.tokens[-1] == "</s>"
    assert rec.special.tolist() == [True] + [False] * (len(rec.tokens) - 2) + [True]
    assert rec.segment_ids.tolist() == [0] * len(rec.tokens) and rec.backend == "torch"
    np.testing.assert_allclose(rec.probs.sum(-1), 1.0, atol=1e-5)


def test_page_values_decode_to_attentions_within_the_stated_error(torch_rt):
    rec = attention_record(torch_rt, TEXT)
    page = render(rec)
    got = decode_page(page)
    quant = got["meta"]["quant"]
    err = np.abs(got["probs"] - rec.probs).max()
    assert quant["bound"] == pytest.approx(1 / 510)
    assert err <= quant["bound"] + 1e-7  # every embedded value within 1/510 of the float32 output
    assert err == pytest.approx(quant["max_error"], abs=1e-6)  # and the page states the real largest error
    k = rec.tokens.index("Ã©")  # é, split from "caf" by the tiny tokenizer
    assert got["meta"]["tokens"][k] == "é" and got["meta"]["raw_tokens"][k] == "Ã©"


def test_pair_encoding_marks_segments(tiny_bert, tiny_roberta):
    rt = encoderkit.load(tiny_bert)
    rec = attention_record(rt, "the cat sat", pair="on the mat")
    toks = rec.tokens
    assert toks[0] == "[CLS]" and toks[-1] == "[SEP]" and toks.count("[SEP]") == 2
    sep = toks.index("[SEP]")
    assert rec.segment_ids.tolist() == [0] * (sep + 1) + [1] * (len(toks) - sep - 1)
    assert rec.special.sum() == 3
    want = rt.tokenizer._tok.encode("the cat sat", "on the mat").ids
    assert rec.token_ids.tolist() == want
    rec = attention_record(encoderkit.load(tiny_roberta), "the cat sat", pair="on the mat")
    b = rec.segment_ids.tolist().index(1)
    assert rec.tokens[b - 2:b] == ("</s>", "</s>") and rec.tokens[b] != "</s>"  # <s> A </s></s> B </s>
    meta = decode_page(render(rec))["meta"]
    assert meta["segments"].index(1) == b and " ‖ " in meta["title"]


def test_layer_and_head_selection():
    rec = synthetic_record(6, 5, 12, seed=3)
    got = decode_page(render(rec, layers=[1, 4], heads=[0, 3]))
    assert got["meta"]["layers"] == [1, 4] and got["meta"]["heads"] == [0, 3]
    assert np.abs(got["probs"] - rec.probs[[1, 4]][:, [0, 3]]).max() <= 1 / 510 + 1e-7
    with pytest.raises(InputError, match="layers 6 out of range"):
        render(rec, layers=[6])
    with pytest.raises(InputError, match="no heads"):
        render(rec, heads=[])


def test_tokens_cannot_break_out_of_the_page():
    rec = synthetic_record(1, 1, 4)
    rec = replace(rec, tokens=("<s>", "</script><img src=x>", "</s>", "</s>"))
    page = render(rec)
    # only the page's own script elements close: 1 meta + 5 data blocks + the viewer's script
    assert page.count("</script>") == 7
    assert decode_page(page)["meta"]["raw_tokens"][1] == "</script><img src=x>"


def test_compare_diff_and_max_per_layer_equal_numpy():
    rec = synthetic_record(4, 3, 20, seed=1)
    rng = np.random.default_rng(2)
    other = replace(rec, probs=(rec.probs + rng.normal(0, 1e-3, rec.probs.shape)).astype(np.float32), backend="b2")
    got = decode_page(render(rec, compare=other))
    diff = other.probs - rec.probs
    want_max = np.abs(diff).reshape(4, -1).max(axis=1)
    d = got["meta"]["diff"]
    assert d["backend"] == "b2"
    np.testing.assert_array_equal(np.float32(d["max_abs"]), want_max)  # exact, not quantized
    assert np.abs(got["diff"] - diff).max() <= d["max_error"] + 1e-9
    assert d["max_error"] <= want_max.max() / 254 + 1e-9  # int8 per layer: half a level of that layer's range
    with pytest.raises(InputError, match="other tokens"):
        render(rec, compare=replace(other, tokens=("x",) * 20))


def _thumb_blob(page: str, name: str) -> np.ndarray:
    import re

    m = re.search(rf'<script type="application/octet-stream" id="ek-{name}">(.*?)</script>', page, re.S)
    return _data.unpack(m.group(1))


def test_thumbnails_are_pooled_from_float_values():
    # 300 tokens of spread-out attention with a local window at 2.2x: below one 8-bit level (1/255)
    # almost everywhere, so the thumbnails must come from the float32 values to show anything
    n = 300
    i = np.arange(n)
    logits = np.where(np.abs(i[:, None] - i[None, :]) <= 4, 0.8, 0.0)
    rec = synthetic_record(1, 2, n, seed=4)
    rec.probs[0, 0] = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    page = render(rec)
    meta = decode_page(page)["meta"]
    t = meta["thumb"]["all"]
    assert t == 32 and meta["thumb"]["scale"] == "uniform"  # the default above 128 tokens
    edges = np.linspace(0, n, t + 1).astype(int)
    blocks = [[rec.probs[0, 0, edges[r]:edges[r + 1], edges[c]:edges[c + 1]] for c in range(t)] for r in range(t)]
    want_max = np.array([[b.max() for b in row] for row in blocks])
    want_mean = np.array([[b.mean() for b in row] for row in blocks])
    q = _thumb_blob(page, "thumbs").reshape(1, 2, t, t)[0, 0]
    got_max = 10.0 ** ((q - 1) / 254 * 6 - 6)
    assert np.abs(np.log(got_max / want_max)).max() <= np.log(10) * 3 / 254 + 1e-9  # half a log level: 2.8 %
    ratio = _thumb_blob(page, "thumbs-ratio").reshape(1, 2, t, t)[0, 0]
    got_ratio = 2.0 ** ((ratio.astype(float) - 128) / 16)
    assert np.abs(np.log2(got_ratio / (want_mean * n))).max() <= 1 / 32 + 1e-9  # half a level: 1/32 octave
    r, c = np.indices((t, t))
    assert ratio[r == c].min() > 128 + 8 and ratio[np.abs(r - c) > 2].max() <= 128  # diagonal above uniform
    pair = synthetic_record(2, 3, 200, seed=6, pair_at=120)  # special tokens in the middle too
    keep = ~pair.special
    mx, mean, t = _data.pooled(pair.probs, keep)  # the no-special grid: blocks of the kept tokens
    kept = pair.probs[:, :, keep][:, :, :, keep]
    e = np.linspace(0, kept.shape[-1], t + 1).astype(int)
    np.testing.assert_array_equal(mx, np.maximum.reduceat(np.maximum.reduceat(kept, e[:-1], -1), e[:-1], -2))
    np.testing.assert_allclose(mean, np.add.reduceat(np.add.reduceat(kept, e[:-1], -1), e[:-1], -2)
                               / np.outer(np.diff(e), np.diff(e)), rtol=1e-5)
    short = decode_page(render(synthetic_record(1, 1, 128)))["meta"]["thumb"]
    assert short["scale"] == "absolute" and short["all"] == 32
    assert decode_page(render(rec, thumb_scale="own"))["meta"]["thumb"]["scale"] == "own"
    with pytest.raises(InputError, match="thumb scale 'max'"):
        render(rec, thumb_scale="max")


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_cli_writes_page_and_png(tiny_roberta, tmp_path, capfd):
    out, png = tmp_path / "view.html", tmp_path / "grid.png"
    rc = main(["attention", str(tiny_roberta), TEXT, "--pair", "A second text.", "--out", str(out),
               "--png", str(png), "--heads", "0,2", "--thumb-scale", "log", "--quiet"])
    assert rc == 0
    assert f"wrote {out}" in capfd.readouterr().out
    got = decode_page(out.read_text(encoding="utf-8"))
    assert got["meta"]["heads"] == [0, 2] and got["meta"]["layers"] == [0, 1]
    assert got["meta"]["thumb"]["scale"] == "log"
    assert got["meta"]["backend"] == "torch" and 1 in got["meta"]["segments"]
    w, h = _png_size(png)
    assert w > 100 and h > 100
    assert not list(tmp_path.glob(".*"))  # no temp files left beside the outputs


@pytest.mark.parametrize("args,message", [
    (["--layers", "0-5"], "--layers '0-5': out of range, the model has 2 layers (0-1)"),
    (["--heads", "0,9"], "--heads '0,9': out of range, the model has 4 heads (0-3)"),
    (["--heads", "3-1"], "runs backwards"),
    (["--layers", "a"], "expected indices and ranges"),
    (["--compare", "torch"], "same backend"),
])
def test_cli_bad_arguments_are_one_line_errors(tiny_roberta, tmp_path, capfd, args, message):
    rc = main(["attention", str(tiny_roberta), TEXT, "--out", str(tmp_path / "v.html"), "--backend", "torch",
               *args])
    err = capfd.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "v.html").exists()


def test_cli_empty_text_is_one_line_error(tiny_roberta, tmp_path, capfd):
    assert main(["attention", str(tiny_roberta), " ", "--out", str(tmp_path / "v.html")]) == 2
    assert capfd.readouterr().err == "error: text is empty\n"
    assert main(["attention", str(tiny_roberta), "a", "--pair", "", "--out", str(tmp_path / "v.html")]) == 2
    assert capfd.readouterr().err == "error: pair is empty\n"


def test_cli_text_over_the_model_length_is_one_line_error(tiny_roberta, tmp_path):
    long = " ".join(["word"] * 400)  # tiny holds 128 tokens
    r = subprocess.run([sys.executable, "-m", "encoderkit.cli", "attention", str(tiny_roberta), long,
                        "--out", str(tmp_path / "v.html")], capture_output=True, text=True,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: text has") and "more than the model's 128" in r.stderr
    assert r.stderr.count("\n") == 1
    ok = subprocess.run([sys.executable, "-m", "encoderkit.cli", "attention", str(tiny_roberta), long, "--truncate",
                         "--out", str(tmp_path / "v.html")], capture_output=True, text=True,
                        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert decode_page((tmp_path / "v.html").read_text(encoding="utf-8"))["meta"]["seq"] == 128


def test_cli_on_the_packaged_minilm(tmp_path):
    out = tmp_path / "minilm.html"
    assert main(["attention", "minilm", "Paris is the capital of France.", "--out", str(out), "--quiet"]) == 0
    got = decode_page(out.read_text(encoding="utf-8"))
    rt = encoderkit.load("minilm")
    want = rt.attentions("Paris is the capital of France.").probs
    assert got["meta"]["tokens"][0] == "[CLS]" and not got["meta"]["byte_level"]
    assert got["probs"].shape == want.shape == (6, 12, got["meta"]["seq"], got["meta"]["seq"])
    assert np.abs(got["probs"] - want).max() <= 1 / 510 + 1e-7


@pytest.mark.slow
def test_cli_on_random_roberta_large(tmp_path):
    from encoderkit.storage.random_init import init_random

    init_random(tmp_path / "large", "large")
    out = tmp_path / "large.html"
    text = "The quick brown fox jumps over the lazy dog. " * 10
    assert main(["attention", str(tmp_path / "large"), text, "--out", str(out), "--png", str(tmp_path / "g.png"),
                 "--quiet"]) == 0
    got = decode_page(out.read_text(encoding="utf-8"))
    assert len(got["meta"]["layers"]) == 24 and len(got["meta"]["heads"]) == 16
    want = encoderkit.load(tmp_path / "large").attentions(text).probs
    assert np.abs(got["probs"] - want).max() <= 1 / 510 + 1e-7
