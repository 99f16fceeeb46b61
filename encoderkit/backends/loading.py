"""The one loader over every backend, and the one gate in front of a converted directory.

``load(model, backend)`` reads a checkpoint on the torch backend or a ``convert`` output on any
backend whose format it holds. ``open_converted(path, fmt)`` is the one way anything opens a
format directory of a convert output: manifest schema and completeness, sizes and sha256 of the
format's files, then the format's origin check (a SavedModel is a program: it must provably be one
this package exported). Backends, the packagers, the release and the bench all go through it (a
test walks the callers).

Backends layer: above the catalog and the backend folders.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from ..core.errors import ArtifactError, InputError, PickleRefusedError
from ..core.extras import extra_installed
from ..storage.checkpoint import resolve_model
from ..storage.hf import read_saved_spec
from ..storage.manifest import check_directory, read_manifest
from .base import EncoderOutput, Runtime
from .catalog import BACKENDS, FORMATS, REFERENCE, resolve
from .catalog import backend as backend_info

MAX_THREADS = 8 * (os.cpu_count() or 1)  # beyond this a thread pool only hurts (and torch hangs on 1e5)


def backend_class(name: str) -> type[Runtime]:
    """The Runtime class registered as ``name``.

    Raises:
        UnknownNameError: listing the valid names.
        MissingDependencyError: the backend's framework is not installed.
    """
    return resolve(backend_info(name).runtime, f"backend {name!r}")


def check_options(options: dict[str, Any]) -> None:
    """The options every backend shares, validated the same way for all.

    Raises:
        InputError: ``threads`` or ``max_tokens`` not a positive integer (threads at most MAX_THREADS).
    """
    for key in ("threads", "max_tokens"):
        v = options.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{key} must be a positive integer, got {v!r}")
    if (options.get("threads") or 0) > MAX_THREADS:
        raise InputError(f"threads {options['threads']} is more than {MAX_THREADS} "
                         f"(8 per core of this machine's {os.cpu_count()})")


def check_known_options(cls: type, name: str, options: dict[str, Any]) -> None:
    """Options the backend's ``load`` / constructor do not take are refused with its options named
    (not a TypeError from deep inside); ``allow_pickle`` is the loader's own.

    Raises:
        InputError: an option backend ``name`` does not have.
    """
    accepted: set[str] = set()
    for fn in (cls.load, cls):  # load(directory, **options) hands them on to the constructor
        params = list(inspect.signature(fn).parameters.values())[1:]  # after the path / checkpoint
        accepted |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    else:
        return  # takes any option: its own code checks them
    unknown = sorted(set(options) - accepted - {"allow_pickle"})
    if unknown:
        raise InputError(f"backend {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                         f"{', '.join(sorted(accepted)) or 'none'}")


def converted_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a convert output (schema and completeness checked), else None."""
    manifest = read_manifest(path)
    if isinstance(manifest, dict) and manifest.get("kind") == "convert":
        return check_directory(path)  # schema, completeness, no symlinks, before anything is opened
    return None


def check_origin(directory: Path, fmt: str, *, trust: bool = False) -> None:
    """Run the format's origin check (catalog ``FormatInfo.origin_check``) unless ``trust``.

    Raises:
        ArtifactError: the artifact is not one this package exported (names the trust flag).
    """
    target = getattr(FORMATS.get(fmt), "origin_check", None)
    if trust or not target:
        return
    resolve(target, f"format {fmt!r}")(Path(directory), read_saved_spec(Path(directory)))


def open_converted(path: str | Path, fmt: str, *, trust: bool = False, hint: str = "") -> Path:
    """The format directory ``fmt`` of a convert output, after the whole gate: manifest schema and
    completeness, sizes and sha256 of the format's files, and the format's origin check.

    Raises:
        ArtifactError: not a convert output, the format is missing (saying how to add it), a file
            changed, or a program that is not provably ours.
    """
    path = Path(path)
    manifest = converted_manifest(path)
    if manifest is None:
        raise ArtifactError(f"{path} is not an `encoderkit convert` output (no convert manifest.json); "
                            f"run: encoderkit convert MODEL --to safetensors,{fmt} --out DIR")
    formats = manifest.get("formats", [])
    if fmt not in formats:
        raise ArtifactError(f"{path} has no {fmt!r} export (it has: {', '.join(formats) or 'none'}); "
                            f"run encoderkit convert with --to {fmt}{hint}")
    check_directory(path, fmt)  # sizes and sha256 of the format's files
    check_origin(path / fmt, fmt, trust=trust)
    return path / fmt


def available_backends(model: str | Path, *, installed_only: bool = True) -> list[str]:
    """Backends that can load ``model``: torch for a checkpoint; for a `convert` output, every
    backend whose format (and variant, e.g. int8) it holds, in table order."""
    path = resolve_model(model)
    manifest = read_manifest(path)
    if manifest is None or manifest.get("kind") != "convert":
        return [REFERENCE]
    formats = manifest.get("formats") or []
    variants = manifest.get("variants")
    out = []
    for b in BACKENDS.values():
        if b.fmt not in formats or (installed_only and not extra_installed(b.extra)):
            continue
        # a variant (int8, fp16) counts only where the manifest lists it (manifests before 0.2 did not)
        if b.variant is not None and not (isinstance(variants, dict) and b.variant in (variants.get(b.fmt) or [])):
            continue
        out.append(b.name)
    return out


def _not_converted(path: Path, model: str | Path, backend: str, fmt: str) -> str:
    """Why ``path`` (no convert manifest) cannot load on ``backend``, and what to do, in one line."""
    real = path.resolve()  # "." inside out/onnx is out/onnx too
    parent = real.parent
    if real.name in FORMATS and (parent / "manifest.json").is_file():
        try:
            kind = (read_manifest(parent) or {}).get("kind")
        except ArtifactError:
            kind = None
        if kind == "convert":
            return (f"{path} is the {real.name}/ folder of the converted model {parent}: load {parent} "
                    f"itself (with backend {backend!r})")
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    # (a hub checkpoint may carry an onnx/ folder of its own beside its weights: still a checkpoint)
    if path.is_dir() and any((path / f).is_dir() for f in FORMATS) and not any((path / w).exists() for w in weights):
        return (f"{path} holds format folders but no manifest.json: not a complete `encoderkit convert` "
                f"output; convert again (encoderkit convert CHECKPOINT --to {fmt} --out DIR)")
    return (f"{path} is a checkpoint; backend {backend!r} needs a converted model: "
            f"encoderkit convert {model} --to {fmt} --out DIR")


def load(model: str | Path, backend: str | None = None, **options: Any) -> Runtime:
    """Load ``model`` (checkpoint dir, hub id, packaged name, or `convert` output) on a backend.

    Args:
        backend: a name from the catalog; default: torch for a checkpoint, else the first backend
            (in table order) whose format the converted directory holds.
        options: backend options (``threads``, ``max_tokens``, ...), ``trust_artifact``: load a
            format that runs code (a SavedModel) even when it is not provably this package's
            export, and ``allow_pickle``: read pickle weights (with torch.load(weights_only=True)).
    Raises:
        ArtifactError: the converted directory lacks the backend's format, fails its manifest (schema,
            unlisted/missing/changed files, symlinks, paths outside), or holds a foreign program.
        UnknownNameError: unknown backend, listing the valid ones.
        InputError: bad ``threads`` / ``max_tokens``.
        PickleRefusedError: a pickle backend without ``allow_pickle``.
    """
    check_options(options)
    trust = bool(options.pop("trust_artifact", False))
    info = backend_info(backend) if backend is not None else None
    path = resolve_model(model)
    manifest = converted_manifest(path)
    if manifest is None:
        info = info or BACKENDS[REFERENCE]
        if info.fmt != BACKENDS[REFERENCE].fmt:
            raise ArtifactError(_not_converted(path, model, info.name, info.fmt))
        cls = backend_class(info.name)
        check_known_options(cls, info.name, options)
        return cls.load(path, **options)
    formats = manifest.get("formats", [])
    if info is None:
        info = next((b for b in BACKENDS.values() if b.fmt in formats and not b.pickle), None)
        if info is None:
            raise ArtifactError(f"{path}: manifest lists no format this version can load")
    if info.pickle and not options.get("allow_pickle"):
        raise PickleRefusedError(f"backend {info.name} reads a pickle ({info.fmt}/), which can run arbitrary "
                                 "code; pass --allow-pickle (allow_pickle=True) to load it with "
                                 "torch.load(weights_only=True)")
    directory = open_converted(path, info.fmt, trust=trust)
    if not info.pickle:
        options.pop("allow_pickle", None)
    cls = backend_class(info.name)
    check_known_options(cls, info.name, options)
    rt = cls.load(directory, **options)
    if info.last_layer_only:
        rt.alternatives = tuple(b.name for b in BACKENDS.values() if not b.last_layer_only and not b.quantized)
    return rt


__all__ = ["EncoderOutput", "Runtime", "available_backends", "backend_class", "check_known_options",
           "check_options", "check_origin",
           "converted_manifest", "load", "open_converted"]
