"""What a converted directory must be before any backend opens a file of it.

A `convert` output is data plus, for TensorFlow, a program (a SavedModel runs its own graph).
Before a backend loads, ``check_directory`` proves:

- ``manifest.json`` has the schema this package writes (typed ``ArtifactError`` otherwise, never
  a KeyError/AttributeError);
- every file of the directory is listed, and every listed path is a relative path that stays
  inside it; no symbolic link and no non-regular file (FIFO, device) anywhere under it;
- each listed file of the loaded format has the listed size (checked before hashing, so a
  tampered entry can never make us read more than the manifest says) and sha256;
Then the format's origin check, where its catalog row names one (``FormatInfo.origin_check``),
runs in ``backends.loading`` (a SavedModel's signatures, variables and ops are exactly what this
package exports), unless the caller trusts the artifact explicitly.

Also writes manifests (``write_manifest``). Storage layer: no framework imports here.
"""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from ..core.errors import ArtifactError
from .files import OWNER_FILE, sha256_file

MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 16 << 20  # a manifest lists file names and hashes: megabytes would be absurd
JSON_MAX_BYTES = 64 << 20  # tokenizer.json of a 250k-vocabulary model is ~20 MB
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RERUN = "re-run `encoderkit convert`"


def inside(root: Path, rel: str, *, what: str) -> Path:
    """``root / rel`` for a relative path that stays inside ``root`` with no symlink on the way.

    Raises:
        ArtifactError: ``rel`` is absolute, climbs out (``..``), or any component is a symlink.
    """
    pure = PurePosixPath(rel)
    if not rel or "\\" in rel or "\0" in rel or pure.is_absolute() or os.path.isabs(rel) \
            or any(p in ("..", ".", "") for p in rel.split("/")):
        raise ArtifactError(f"{root}: {what} {rel!r} is not a plain relative path inside the directory; "
                            "refusing to open it")
    path = root
    for part in pure.parts:
        path = path / part
        if path.is_symlink():
            raise ArtifactError(f"{path}: {what} is a symbolic link; refusing to follow it ({_RERUN})")
    return path


def regular_file(path: Path, *, what: str, max_bytes: int | None = None) -> int:
    """Size of ``path``, which must be a regular file (not a symlink, FIFO or device).

    Raises:
        ArtifactError: missing, a symlink, not a regular file, or larger than ``max_bytes``.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: {what} is missing; {_RERUN}") from None
    if stat.S_ISLNK(st.st_mode):
        raise ArtifactError(f"{path}: {what} is a symbolic link; refusing to follow it")
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(f"{path}: {what} is not a regular file; refusing to read it")
    if max_bytes is not None and st.st_size > max_bytes:
        raise ArtifactError(f"{path}: {what} is {st.st_size} bytes, more than the {max_bytes} it can be")
    return st.st_size


def read_bounded(path: Path, max_bytes: int, *, what: str) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (never reads beyond that).

    Raises:
        ArtifactError: see ``regular_file``; or the file grew while being read.
    """
    regular_file(path, what=what, max_bytes=max_bytes)
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ArtifactError(f"{path}: {what} is more than {max_bytes} bytes")
    return data


def read_json_bounded(path: Path, *, what: str, max_bytes: int = JSON_MAX_BYTES) -> Any:
    """Parse a bounded, regular JSON file. Raises ArtifactError on anything else."""
    data = read_bounded(path, max_bytes, what=what)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ArtifactError(f"{path}: {what} is not valid JSON ({type(e).__name__}); {_RERUN}") from None


def parse_manifest(root: Path, data: Any) -> dict[str, Any]:
    """Validate the manifest's schema; returns it unchanged.

    Raises:
        ArtifactError: naming the first field that is not what ``write_manifest`` writes.
    """
    where = root / MANIFEST

    def bad(msg: str) -> ArtifactError:
        return ArtifactError(f"{where}: {msg}; {_RERUN}")

    if not isinstance(data, dict):
        raise bad("not a JSON object")
    if data.get("encoderkit_manifest") != 1 or isinstance(data.get("encoderkit_manifest"), bool):
        raise bad("'encoderkit_manifest' is not 1")
    if "kind" in data and not isinstance(data["kind"], str):
        raise bad("'kind' is not a string")
    if data.get("kind") == "convert":
        formats = data.get("formats")
        if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
            raise bad("'formats' is not a list of names")
        variants = data.get("variants")
        if variants is not None and not (isinstance(variants, dict) and all(
                isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v)
                for k, v in variants.items())):
            raise bad("'variants' is not a mapping of format -> list of names")
    files = data.get("files")
    if not isinstance(files, dict):
        raise bad("'files' is not a mapping of path -> {sha256, bytes}")
    for rel, meta in files.items():
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) \
                or not _SHA256.match(meta["sha256"]):
            raise bad(f"entry {rel!r} has no valid 'sha256'")
        size = meta.get("bytes")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise bad(f"entry {rel!r} has no valid 'bytes'")
        inside(root, rel, what="manifest entry")  # lexical + symlink check, before any stat/read
        if rel == MANIFEST:
            raise bad("it lists itself")
    return data


def read_manifest_checked(root: Path) -> dict[str, Any] | None:
    """The validated manifest of ``root``, or None where it has none.

    Raises:
        ArtifactError: a symlinked, oversized, unparsable or malformed manifest.
    """
    path = root / MANIFEST
    if not os.path.lexists(path):
        return None
    return parse_manifest(root, read_json_bounded(path, what=MANIFEST, max_bytes=MANIFEST_MAX_BYTES))


def directory_files(root: Path) -> list[str]:
    """Every file under ``root`` (relative posix paths), refusing symlinks and non-regular entries.

    Raises:
        ArtifactError: a symbolic link or a FIFO/device/socket anywhere under ``root``.
    """
    out: list[str] = []
    stack = [(root, "")]
    while stack:
        d, prefix = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                rel = f"{prefix}{e.name}"
                if e.is_symlink():
                    raise ArtifactError(f"{root / rel}: a symbolic link inside a converted model; "
                                        f"refusing to follow it ({_RERUN})")
                if e.is_dir(follow_symlinks=False):
                    stack.append((Path(e.path), rel + "/"))
                elif e.is_file(follow_symlinks=False):
                    out.append(rel)
                else:
                    raise ArtifactError(f"{root / rel}: not a regular file (FIFO, device or socket) inside "
                                        f"a converted model; refusing to read it")
    return sorted(out)


def check_directory(root: Path, fmt: str | None = None, *, hint: str | None = None) -> dict[str, Any]:
    """Prove ``root`` (a `convert` output, or a checkpoint encoderkit wrote) is complete and
    untouched; hash ``fmt``'s files.

    Args:
        fmt: the format subdirectory about to be loaded (its files are hashed); None: every file.
        hint: what to do about a changed file (default: re-run `encoderkit convert`).
    Returns:
        The validated manifest.
    Raises:
        ArtifactError: see the module docstring.
    """
    root = Path(root)
    rerun = hint or _RERUN
    if os.path.islink(root / MANIFEST) or (fmt and os.path.islink(root / fmt)):
        raise ArtifactError(f"{root}: manifest or format directory is a symbolic link; refusing to follow it")
    manifest = read_manifest_checked(root)
    if manifest is None:
        raise ArtifactError(f"{root}: no {MANIFEST}; {_RERUN}")
    listed = manifest["files"]
    present = [f for f in directory_files(root) if f != MANIFEST]
    unlisted = [f for f in present if f not in listed]
    if unlisted:
        raise ArtifactError(f"{root / unlisted[0]}: not listed in {MANIFEST} (added later?); "
                            f"refusing to load a directory with unlisted files ({rerun})")
    missing = [f for f in listed if f not in set(present)]
    if missing:
        raise ArtifactError(f"{root / missing[0]}: listed in {MANIFEST} but missing; {rerun}")
    for rel, meta in listed.items():
        if fmt and not rel.startswith(fmt.rstrip("/") + "/"):
            continue
        path = root / rel
        size = regular_file(path, what="listed file")
        if size != meta["bytes"]:  # before hashing: never read more than the manifest promises
            raise ArtifactError(f"{path}: {size} bytes, {MANIFEST} says {meta['bytes']} (corrupted or edited); "
                                f"{rerun}")
        if sha256_file(path) != meta["sha256"]:
            raise ArtifactError(f"{path}: sha256 differs from {MANIFEST} (corrupted or edited); {rerun}")
    return manifest



def write_manifest(root: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``root/manifest.json`` with the sha256 and size of every other file under root."""
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST and p.name != OWNER_FILE:
            rel = p.relative_to(root).as_posix()
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest = {"encoderkit_manifest": 1, **(extra or {}), "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest of ``root`` with its schema validated, or None where there is none.

    Raises:
        ArtifactError: unreadable, symlinked, oversized or not the schema ``write_manifest`` writes.
    """
    return read_manifest_checked(Path(root))


def verify_manifest(root: Path, subdir: str | None = None) -> dict[str, Any]:
    """Check the whole directory against its manifest and hash the files under ``subdir``.

    Raises:
        ArtifactError: see ``check_directory``.
    """
    return check_directory(Path(root), subdir)
