"""The texts the package ships (package data): the small corpus random tokenizers are trained on and
probes are cut from, and the benchmark workloads (static int8 calibrates on them too).
Core layer.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_CORPUS = ROOT / "corpus.txt"
# The benchmark workloads ship inside the package (a non-editable install runs `encoderkit bench`
# too); static int8 calibrates on them as well.
WORKLOADS = ROOT / "workloads"


def corpus_lines() -> list[str]:
    return [ln for ln in _CORPUS.read_text().splitlines() if ln.strip()]


def read_workload(name: str, mask_token: str, workloads: Path = WORKLOADS, limit: int | None = None) -> list[str]:
    """The non-empty lines of ``workloads/NAME.txt``, ``<mask>`` spelt the model's way."""
    lines = [ln for ln in (workloads / f"{name}.txt").read_text().splitlines() if ln.strip()]
    return [ln.replace("<mask>", mask_token) for ln in lines][:limit]
