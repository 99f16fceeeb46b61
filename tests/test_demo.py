"""`make demo` (`python -m encoderkit.demo`): the README's main job, run whole at a small size.

Slow (a small RoBERTa and the real MiniLM converted to every format, ~5 min here); .ci/run runs it
after `make test` (marker ci_slow) because it is what a new user runs first.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from encoderkit.backends.catalog import BACKENDS, FORMATS

REPO = Path(__file__).resolve().parents[1]


def _demo(cwd: Path, *args: str, env_extra: dict[str, str] | None = None, timeout: int = 2400):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "encoderkit.demo", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_demo_refuses_an_unknown_size(tmp_path):
    p = _demo(tmp_path, env_extra={"ENCODERKIT_DEMO_SIZE": "huge"}, timeout=300)
    assert p.returncode == 2 and "unknown size 'huge'; choose one of: tiny, small, base, large" in p.stderr
    assert not (tmp_path / "demo-out").exists()


@pytest.mark.slow
@pytest.mark.ci_slow
def test_make_demo_job_at_small_size(tmp_path):
    p = _demo(tmp_path, "--size", "small")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    # 1. the random model on torch: said to be random; fill-mask for every mask of every sentence
    assert "== 1. random-weight roberta-small on the torch reference backend" in out
    assert "the weights are RANDOM" in out and "FacebookAI/roberta-large" in out
    assert re.search(r"loaded in [0-9.]+s: 4 layers, hidden 128, vocab 5000", out), out[:2000]
    assert len(re.findall(r"^  mask \d: '.*' [0-9.]+, ", out, re.M)) == 4  # 3 sentences, one with two masks
    # 2. every format converted and validated; every backend's answers shown beside torch's
    conv = tmp_path / "demo-out" / "roberta-small-converted"
    assert (conv / "manifest.json").is_file() and (tmp_path / "demo-out" / "roberta-small-random").is_dir()
    section2 = out.split("== 2. every format, validated against torch", 1)[1].split("== 3.", 1)[0]
    expected = [b for b, info in BACKENDS.items() if FORMATS[info.fmt].in_all and info.variant in (None, "int8")]
    rows = {m[1]: m for m in re.finditer(r"^  (\S+) +(\d+)/(\d+) +([0-9.e+-]+) +([0-9.e+-]+) +[0-9.]+$", section2, re.M)}
    assert sorted(rows) == sorted(expected), section2
    for b, m in rows.items():
        if not BACKENDS[b].quantized:  # fp32: torch's scores and embeddings within the tolerance
            assert float(m[4]) <= BACKENDS[b].tolerance.atol and float(m[5]) <= BACKENDS[b].tolerance.atol, m[0]
    # 3. the real MiniLM: a similarity table per backend in which the numbers mean something
    section3 = out.split("== 3. real weights: all-MiniLM-L6-v2", 1)[1]
    header = next(ln for ln in section3.splitlines() if ln.startswith("| sentence A |"))
    table = [ln for ln in section3.splitlines() if ln.startswith("| ") and not ln.startswith(("| sentence A", "|---"))]
    assert len(table) == 6 and "| torch |" in header + "|" and "| onnx-int8 |" in header + "|"
    cos = [[float(x) for x in ln.strip("| ").split(" | ")[2:]] for ln in table]
    for col in range(len(cos[0])):  # a paraphrase is closer than an unrelated sentence, on every backend
        assert cos[0][col] > cos[1][col] + 0.2 and cos[2][col] > cos[3][col] + 0.2, (header, table)
