"""The systems a benchmark times: encoderkit's backends, each loaded through ``encoderkit.load``,
and the ``System`` record every contender (ours and the peers') is.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backends.catalog import backend
from ..backends.loading import load
from ..core.progress import say
from ..tasks import TASKS


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6 if path.exists() else 0.0


class System:
    """One contender: a name, what it runs per task, and how it was loaded."""

    def __init__(self, name: str, kind: str, runners: dict[str, Callable[[list[str]], Any]],
                 single: Callable[[str], Any] | None, load_s: float, rss_mb: float, size_mb: float,
                 backend: str | None = None):
        self.name, self.kind, self.runners, self.single = name, kind, runners, single
        self.load_s, self.rss_mb, self.size_mb = load_s, rss_mb, size_mb
        self.backend = backend or name  # the catalog backend whose gate holds it (a variant's label differs)


def our_systems(model: Path, ckpt_dir: Path, backends: list[str], tasks: list[str],
                variants: dict[str, tuple[Path, str]] | None = None) -> tuple[list[System], Any, dict]:
    """One ``System`` per backend (and per variant: ``{label: (directory, backend)}``), running
    every benchmarked task the way a user calls it; returns (systems, the first runtime loaded (the
    reference when torch is among them), {variant: the CTranslate2 ``Encoder`` loaded}, for the
    CTranslate2-direct peer to share)."""
    systems: list[System] = []
    ref = None
    ct2_loaded: dict[str, Any] = {}
    todo = [(b, model, b) for b in backends] + [(label, d, b) for label, (d, b) in (variants or {}).items()]
    for label, where, b in todo:
        rss, t = _rss_mb(), time.perf_counter()
        # the peers run on the CPU, so the torch backend does too (it would pick CUDA where present)
        rt = load(where, b, **dict(backend(b).cpu_options))
        load_s = time.perf_counter() - t
        fmt = backend(b).fmt
        loaded = rt.artifact_bytes()
        size = loaded / 1e6 if loaded is not None else _dir_mb(ckpt_dir if fmt == "safetensors" else where / fmt)
        runners = {name: (lambda xs, rt=rt, task=TASKS[name]: task.run(rt, xs, truncate=True)) for name in tasks}
        if fmt == "ctranslate2" and where == model:  # the direct peer calls the same loaded model
            ct2_loaded[backend(b).variant or "fp32"] = rt.encoder
        systems.append(System(label, "encoderkit", runners,
                              lambda x, rt=rt: TASKS["fill-mask"].run(rt, [x], truncate=True),
                              load_s, _rss_mb() - rss, size, backend=b))
        ref = ref or rt
        say(f"loaded {label} in {load_s:.1f}s")
    return systems, ref, ct2_loaded
