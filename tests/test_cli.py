"""The CLI as a user runs it: a subprocess, JSON on stdout, one-line errors with exit 2."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "encoderkit.cli", *map(str, args)],
                       capture_output=True, text=True, timeout=300)
    if check and p.returncode:
        raise AssertionError(f"exit {p.returncode}: {p.stderr}")
    return p


def test_fill_mask_json_shape(tiny_roberta):
    p = run("fill-mask", tiny_roberta, "Hello <mask>.", "Two <mask> and <mask>.", "--top-k", "3", "--json")
    out = json.loads(p.stdout)
    assert [len(x) for x in out] == [1, 2]
    for per_text in out:
        for preds in per_text:
            assert len(preds) == 3
            assert all(set(p) == {"token", "token_str", "score", "sequence"} for p in preds)
            assert preds[0]["score"] >= preds[1]["score"] >= preds[2]["score"]


def test_embed_json_and_info(tiny_roberta):
    out = json.loads(run("embed", tiny_roberta, "one", "two words", "--normalize", "--json").stdout)
    assert len(out) == 2 and len(out[0]) == 32
    assert abs(sum(x * x for x in out[0]) - 1) < 1e-5
    info = json.loads(run("info", tiny_roberta, "--json").stdout)
    assert info["arch"] == "roberta" and info["parameters"] > 50_000


@pytest.mark.parametrize("args,needle", [
    (["fill-mask", "{ck}", "no mask"], "mask token <mask> is missing"),
    (["embed", "{ck}", "x", "--layer", "9"], "layer must be in 0..2"),
    (["fill-mask", "/nonexistent/dir", "a <mask>"], "not a checkpoint directory"),
    (["fill-mask", "{ck}", "a <mask>", "--backend", "nope"], "unknown backend 'nope'"),
    (["init-random", "{ck}"], "already exists; pass --force"),
    (["embed", "{ck}", "word " * 300], "--truncate"),
])
def test_bad_input_exits_2_with_one_line(tiny_roberta, args, needle):
    p = run(*[a.format(ck=tiny_roberta) for a in args], check=False)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_init_random_cli(tmp_path):
    p = run("init-random", tmp_path / "m", "--size", "tiny", "--arch", "bert", "--seed", "5")
    assert "bert" in p.stdout and (tmp_path / "m" / "manifest.json").is_file()
