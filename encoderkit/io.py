"""Atomic artifact writing and the sha256 manifest.

Nothing is ever written in place: an artifact is built in a temporary directory beside its
target and renamed into place only when complete, so a crash leaves no half-written artifact.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ArtifactError, InputError

MANIFEST = "manifest.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(root: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``root/manifest.json`` with the sha256 and size of every other file under root."""
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(root).as_posix()
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest = {"encoderkit_manifest": 1, **(extra or {}), "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: unreadable manifest ({e})") from None


def verify_manifest(root: Path, subdir: str | None = None) -> None:
    """Check every file listed in the manifest (optionally only under ``subdir``) by sha256.

    Raises:
        ArtifactError: a listed file is missing or its content changed.
    """
    manifest = read_manifest(root)
    if manifest is None:
        raise ArtifactError(f"{root}: no {MANIFEST}; re-run `encoderkit convert`")
    for rel, meta in manifest.get("files", {}).items():
        if subdir and not rel.startswith(subdir.rstrip("/") + "/"):
            continue
        p = root / rel
        if not p.is_file():
            raise ArtifactError(f"{p}: listed in {MANIFEST} but missing; re-run `encoderkit convert`")
        if sha256_file(p) != meta["sha256"]:
            raise ArtifactError(f"{p}: sha256 differs from {MANIFEST} (corrupted or edited); "
                                "re-run `encoderkit convert`")


@contextlib.contextmanager
def atomic_dir(target: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``.

    Raises:
        InputError: target exists and ``force`` is False.
    """
    target = Path(target)
    if target.exists() and not force:
        raise InputError(f"{target} already exists; pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the artifact should not be
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
