"""convert's own gate, made to fail (issue 27).

A wrong export of every format of the catalog (the test hook ``ENCODERKIT_TEST_PERTURB`` in
encoderkit/conversion.py shifts one weight handed to that format's exporter): `convert` exits 2
with one line naming the backend, the max difference, its bound and where, and leaves nothing at
``--out``. A checkpoint run-time int8 cannot represent, per tensor or per token (``int8_hostile``,
fp32 untouched): the quantized exports fall below their accuracy thresholds, and each of
``--min-top1``, ``--min-top5``, ``--min-cosine`` lifts exactly its own failure.
"""
from __future__ import annotations

import re

import pytest

from encoderkit.backends.catalog import FORMATS, backends_of_format
from encoderkit.cli import main
from encoderkit.conversion import PERTURB_ENV
from parity_tests.helpers import int8_hostile, peaked

pytestmark = pytest.mark.xdist_group("gate")

FAIL = re.compile(r"error: (?P<backend>\S+) export disagrees with torch: max \|diff\| of (?P<check>[a-z ]+) "
                  r"(?P<value>[0-9.e+-]+) > (?P<bound>[0-9.e+-]+) at batch (?P<where>\S+, row \d+, position \d+)")
QUANT_WORDS = {"top1": "top1", "top5": "top5", "cosine": "min_cosine"}


def convert_cli(capfd, *args) -> tuple[int, list[str]]:
    """Exit code and the error lines. (In this process, torch's exporter logger may write to the
    stream pytest swapped in before encoderkit's capture starts; a user's terminal gets only the
    error line, as `python -m encoderkit.cli` shows.)"""
    capfd.readouterr()
    rc = main(["convert", *map(str, args), "--quiet"])
    lines = capfd.readouterr().err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert not errors or errors == lines[-1:], lines
    return rc, errors


def nothing_left(parent) -> None:
    """No output, no temp dir, no lock beside it."""
    assert sorted(p.name for p in parent.iterdir()) == [], list(parent.iterdir())


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_wrong_export_of_every_format_fails_convert(tiny_roberta, tmp_path, capfd, monkeypatch, fmt):
    monkeypatch.setenv(PERTURB_ENV, f"{fmt}:0.05")
    parent = tmp_path / "target"
    parent.mkdir()
    rc, err = convert_cli(capfd, tiny_roberta, "--to", fmt, "--out", parent / "out")
    assert rc == 2 and len(err) == 1, err
    m = FAIL.fullmatch(err[0])
    assert m, err[0]
    first = backends_of_format(fmt)[0]  # the fp32 backend of the format, validated first
    assert m["backend"] == first.name and first.tolerance.atol is not None
    assert float(m["bound"]) == first.tolerance.atol
    # a 0.05 shift of one bias reaches the hidden states at about that size, far beyond the bound
    assert 0.005 < float(m["value"]) < 1, err[0]
    nothing_left(parent)


def test_only_the_named_format_is_perturbed(tiny_roberta, tmp_path, capfd, monkeypatch):
    """The hook leaves the other formats (and the reference) alone: the first one passes, the
    named one fails; the classification-free checkpoint is refused when the hook names a tensor it
    does not have (so a misspelt hook cannot silently test nothing)."""
    monkeypatch.setenv(PERTURB_ENV, "flax:0.05")
    rc, err = convert_cli(capfd, tiny_roberta, "--to", "safetensors,flax", "--out", tmp_path / "a")
    assert rc == 2 and FAIL.fullmatch(err[0])["backend"] == "flax", err
    monkeypatch.setenv(PERTURB_ENV, "flax:0.05:classifier.out_proj.bias")
    rc, err = convert_cli(capfd, tiny_roberta, "--to", "flax", "--out", tmp_path / "b")
    assert rc == 2 and "no tensor of this checkpoint ends with 'classifier.out_proj.bias'" in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def hostile(tiny_roberta, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return int8_hostile(peaked(tiny_roberta, root / "peaked"), root / "hostile")


def _failing(line: str, backend: str) -> set[str]:
    """The metrics a quantized gate failure names."""
    head = f"error: {backend} export is below its accuracy thresholds: "
    assert line.startswith(head) and line.endswith("(change them with --min-top1/--min-top5/--min-cosine)"), line
    return {m for m in ("top1", "top5", "min_cosine") if f": {m} " in line}


def test_min_thresholds_decide_the_quantized_verdict(hostile, tmp_path, capfd):
    parent = tmp_path / "target"
    parent.mkdir()
    out = parent / "out"
    base = [hostile, "--to", "ctranslate2", "--quantize", "int8", "--out", out]
    rc, err = convert_cli(capfd, *base)
    assert rc == 2 and len(err) == 1, err
    assert _failing(err[0], "ctranslate2-int8") == {"top1", "top5", "min_cosine"}  # fp32 ctranslate2 passed
    nothing_left(parent)
    # each flag lifts its own failure and only that one
    flags = []
    for flag, metric in (("--min-top1", "top1"), ("--min-top5", "top5"), ("--min-cosine", "min_cosine")):
        flags += [flag, "0"]
        rc, err = convert_cli(capfd, *base, *flags)
        if metric != "min_cosine":
            assert rc == 2 and metric not in _failing(err[0], "ctranslate2-int8"), (flags, err)
            nothing_left(parent)
    assert rc == 0, err
    report = (out / "report.md").read_text()
    for words in ("fill-mask top-1 agreement", "fill-mask top-5 overlap", "min cosine, mean-pooled"):
        line = next(x for x in report.splitlines() if x.startswith(f"| ctranslate2-int8 | {words} |"))
        assert line.endswith("| ≥ 0.0 |"), line


def test_onnx_int8_of_the_hostile_checkpoint_fails_at_the_default_thresholds(hostile, tmp_path, capfd):
    rc, err = convert_cli(capfd, hostile, "--to", "onnx", "--quantize", "int8", "--out", tmp_path / "out")
    assert rc == 2 and _failing(err[0], "onnx-int8") == {"top1", "top5", "min_cosine"}, err
    assert list(tmp_path.iterdir()) == []


def test_raising_a_threshold_fails_a_good_export(tiny_roberta, tmp_path, capfd):
    """The other direction: the same (good) int8 export passes at the defaults and fails at
    --min-cosine 1 (quantized embeddings are never exactly the reference's)."""
    base = [tiny_roberta, "--to", "ctranslate2", "--quantize", "int8"]
    rc, err = convert_cli(capfd, *base, "--out", tmp_path / "ok")
    assert rc == 0, err
    rc, err = convert_cli(capfd, *base, "--min-cosine", "1", "--out", tmp_path / "strict")
    assert rc == 2 and _failing(err[0], "ctranslate2-int8") == {"min_cosine"}, err
    assert not (tmp_path / "strict").exists()
