"""``convert``: the one fixed sequence load -> export -> validate -> save.

Converters (``backends/<name>/export.py``) only export; runtimes only load and run; the gate
(``verify.gate``) compares them; this module runs the sequence. Everything is built in a temporary
directory beside the target and renamed into place only after every export has passed validation.
Conversion layer: above verify, below the applications.

Test hook (not a flag; for tests/test_gate.py, like ci/release.py's ``ENCODERKIT_RELEASE_PERTURB``):
``ENCODERKIT_TEST_PERTURB=FORMAT[:DELTA[:TENSOR]]`` hands format FORMAT's exporter a copy of the
canonical weights with DELTA (default 0.05) added to element 0 of one tensor (default: the first
encoder layer's feed-forward output bias; TENSOR: the tensor whose canonical name ends with it,
e.g. ``classifier.out_proj.bias``), i.e. a converter bug. Every other format gets the real weights
and the torch reference is built from them, so that format's export disagrees and the gate must
say so. It is announced on stderr; no user runs with it.
"""
from __future__ import annotations

import dataclasses
import os
import resource
import time
from pathlib import Path
from typing import Any

from .backends.catalog import FORMATS, REFERENCE, converter, unvalidated_backends, validated_backends
from .backends.converter import Converter
from .core.errors import InputError, UnknownNameError
from .core.options import make_options, option_names
from .core.progress import bar, say
from .storage.checkpoint import load_checkpoint, local_model_path
from .storage.files import atomic_dir, refuse_overlap, refuse_special
from .storage.manifest import write_manifest
from .verify.gate import ValidationOptions, reference_probes, validate_export
from .verify.report import render_report


def _reference(ckpt):
    """The torch reference over the loaded checkpoint (on the CPU: the exports are validated there)."""
    from .backends.catalog import BACKENDS, resolve

    return resolve(BACKENDS[REFERENCE].runtime, "the reference backend")(ckpt, device="cpu")


PERTURB_ENV = "ENCODERKIT_TEST_PERTURB"


def _perturbed_for(fmt: str, ckpt):
    """``ckpt``, or (test hook, ``ENCODERKIT_TEST_PERTURB``) a copy with one weight shifted when the
    hook names ``fmt``."""
    spec = os.environ.get(PERTURB_ENV)
    if not spec:
        return ckpt
    target, _, rest = spec.partition(":")
    if target != fmt:
        return ckpt
    delta, _, tensor = rest.partition(":")
    suffix = tensor or "encoder.layer.0.output.dense.bias"
    names = sorted(k for k in ckpt.state if k.endswith(suffix))
    if not names:
        raise InputError(f"{PERTURB_ENV}: no tensor of this checkpoint ends with {suffix!r}")
    state = dict(ckpt.state)
    arr = state[names[0]].copy()
    arr.reshape(-1)[0] += float(delta or 0.05)  # one element: a uniform shift would vanish in a LayerNorm
    state[names[0]] = arr
    say(f"TEST HOOK {PERTURB_ENV}={spec}: {fmt} exported with {names[0]}[0] += {float(delta or 0.05)}")
    return dataclasses.replace(ckpt, state=state)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_converters(formats: list[str], options: dict[str, Any]) -> tuple[list[Converter], Any]:
    """One converter per format with its typed options, and the validation options.

    Every key of ``options`` must be an option of one of the selected formats (or of validation).

    Raises:
        UnknownNameError: an option no format has (e.g. a misspelling), listing the valid ones.
        InputError: an option of a format that is not being converted, or a bad value.
    """
    classes = {f: converter(f) for f in formats}  # unknown formats fail here, before any work
    # An option name may belong to several formats (--quantize: onnx and ctranslate2): each gets it.
    owners: dict[str, list[str]] = {n: ["validation"] for n in option_names(ValidationOptions)}
    for f, cls in classes.items():
        for n in option_names(cls.Options):
            owners.setdefault(n, []).append(f)
    for key in options:
        if key in owners:
            continue
        elsewhere = [f for f in FORMATS if f not in classes and key in option_names(converter(f).Options)]
        if elsewhere:
            raise InputError(f"option {key!r} belongs to format {elsewhere[0]!r}, which is not in --to "
                             f"({', '.join(formats)})")
        raise UnknownNameError(f"unknown conversion option {key!r}; valid options for --to "
                               f"{','.join(formats)}: {', '.join(sorted(owners))}")
    convs = [cls(make_options(cls.Options, {k: v for k, v in options.items() if f in owners[k]},
                              owner=f"format {f!r}")) for f, cls in classes.items()]
    validation = make_options(ValidationOptions, {k: v for k, v in options.items() if "validation" in owners[k]},
                              owner="validation")
    return convs, validation


def convert(model: str | Path, formats: list[str], out: str | Path, *, force: bool = False,
            allow_pickle: bool = False, validate: bool = True, **options: Any) -> dict[str, Any]:
    """Convert ``model`` to every format in ``formats`` under ``out``, validating each.

    Args:
        options: the typed options of the selected formats (e.g. ``quantize="int8"``, ``fuse=False``)
            and of validation (``min_top1``, ``min_top5``, ``min_cosine``).
    Returns:
        The report data (per format: export facts, parity results, seconds, peak RSS).
    Raises:
        ParityError: an export disagrees with the torch reference beyond its tolerance.
        CheckpointError, InputError, UnknownNameError: bad input (unknown options included; an
            ``out`` that is, contains or lies inside the model).
    """
    convs, vopts = build_converters(list(formats), options)
    refuse_overlap(out, [("model", local_model_path(model))])  # --force would delete the source
    refuse_special(out)  # before any work: /dev/null is no output directory
    t0 = time.perf_counter()
    ckpt = load_checkpoint(model, allow_pickle=allow_pickle)
    say(f"loaded {model} ({ckpt.spec.arch}, {ckpt.spec.num_layers} layers) in {time.perf_counter() - t0:.1f}s")
    probes = None  # the torch reference's answers on the probes, computed once for all formats
    report: dict[str, Any] = {"model": str(model), "spec": ckpt.spec.to_dict(), "formats": {}}
    validated = {c.name: validated_backends(c.name, c.options.variants()) for c in convs}
    skipped = {c.name: unvalidated_backends(c.name, c.options.variants()) for c in convs} if validate else {}
    for fmt, why in skipped.items():
        if why:  # a backend of this format convert cannot check here: said, and listed in report.md
            say(f"{fmt}: not validated here: " + "; ".join(f"{b} ({w})" for b, w in why.items()))
    steps = sum(1 + (len(validated[c.name]) if validate else 0) for c in convs)
    with atomic_dir(Path(out), force=force) as tmp, bar(total=steps, desc="convert", unit="step") as progress:
        for conv in convs:
            t = time.perf_counter()
            progress.set_postfix_str(f"exporting {conv.name}")
            if progress.disable:  # no bar (not a terminal): a line per step instead
                say(f"exporting {conv.name} ...")
            (tmp / conv.name).mkdir()
            info = conv.export(_perturbed_for(conv.name, ckpt), tmp / conv.name)
            progress.update()
            entry = {"export": info, "export_seconds": time.perf_counter() - t, "parity": {},
                     "not_validated": skipped.get(conv.name, {})}
            if validate:
                if probes is None:
                    probes = reference_probes(_reference(ckpt))
                for b in validated[conv.name]:
                    progress.set_postfix_str(f"validating {b.name}")
                    if progress.disable:
                        say(f"validating {b.name} against torch ...")
                    entry["parity"][b.name] = validate_export(tmp / conv.name, b.name, probes, vopts)
                    progress.update()
            entry["peak_rss_mb"] = peak_rss_mb()
            entry["seconds"] = time.perf_counter() - t
            report["formats"][conv.name] = entry
        (tmp / "report.md").write_text(render_report(report, tmp))
        write_manifest(tmp, {"kind": "convert", "formats": [c.name for c in convs], "source": str(model),
                             "variants": {c.name: sorted(c.options.variants()) for c in convs}})
    return report
