"""Format converters and ``convert``: checkpoint in, validated artifacts + manifest + report out."""
from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

from ..checkpoint import load_checkpoint
from ..io import atomic_dir, write_manifest
from .base import FORMATS, Converter, converter, parse_formats, register


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def convert(model: str | Path, formats: list[str], out: Path, *, force: bool = False,
            allow_pickle: bool = False, validate: bool = True, progress=None,
            **options: Any) -> dict[str, Any]:
    """Convert ``model`` to every format in ``formats`` under ``out``, validating each.

    Everything is written to a temporary directory beside ``out`` and renamed into place only
    after every export has passed validation, with ``manifest.json`` and ``report.md``.

    Returns:
        The report data (per format: export facts, parity results, seconds, peak RSS).
    Raises:
        ParityError: an export disagrees with the torch reference beyond its tolerance.
        CheckpointError, InputError, UnknownNameError: bad input.
    """
    from ..validate import reference_probes, render_report, validate_export

    say = progress or (lambda msg: None)
    convs = [converter(f)(**options) for f in formats]  # fail on unknown names before any work
    t0 = time.perf_counter()
    ckpt = load_checkpoint(model, allow_pickle=allow_pickle)
    say(f"loaded {model} ({ckpt.spec.arch}, {ckpt.spec.num_layers} layers) in {time.perf_counter() - t0:.1f}s")
    probes = None  # the torch reference's answers on the probes, computed once for all formats
    report: dict[str, Any] = {"model": str(model), "spec": ckpt.spec.to_dict(), "formats": {}}
    with atomic_dir(Path(out), force=force) as tmp:
        for conv in convs:
            t = time.perf_counter()
            say(f"exporting {conv.name} ...")
            (tmp / conv.name).mkdir()
            info = conv.export(ckpt, tmp / conv.name)
            entry = {"export": info, "export_seconds": time.perf_counter() - t, "parity": {}}
            if validate:
                if probes is None:
                    from ..runtimes.torch import TorchRuntime

                    probes = reference_probes(TorchRuntime(ckpt))
                for backend in conv.validated_backends():
                    say(f"validating {backend} against torch ...")
                    entry["parity"][backend] = validate_export(tmp / conv.name, backend, probes, **options)
            entry["peak_rss_mb"] = peak_rss_mb()
            entry["seconds"] = time.perf_counter() - t
            report["formats"][conv.name] = entry
        (tmp / "report.md").write_text(render_report(report, tmp))
        write_manifest(tmp, {"kind": "convert", "formats": [c.name for c in convs], "source": str(model)})
    return report


__all__ = ["FORMATS", "Converter", "convert", "converter", "parse_formats", "register"]
