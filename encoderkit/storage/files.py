"""Atomic writing: temp directories beside their target, renamed into place; target locks; sha256.

Nothing is ever written in place: an artifact is built in a temporary directory beside its
target and renamed into place only when complete, so a crash leaves no half-written artifact.
Storage layer.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..core.errors import EncoderkitError, InputError
from ..core.progress import say

def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


OWNER_FILE = ".encoderkit-owner"  # inside every temp dir: "pid host" of the process writing it
LOW_DISK_BYTES = 64 << 20  # below this, a failed write is reported as a full disk


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _dead_owner(tmp: Path) -> int | None:
    """The pid that wrote temp dir ``tmp`` if it is dead (and on this host), else None."""
    owner = tmp / OWNER_FILE
    try:
        if owner.is_symlink() or not owner.is_file() or owner.stat().st_size > 256:
            return None
        pid_s, _, host = owner.read_text().strip().partition(" ")
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    if host != socket.gethostname() or pid <= 0 or pid == os.getpid() or _pid_alive(pid):
        return None
    return pid


def clean_stale(target: Path) -> list[Path]:
    """Remove temp/old dirs beside ``target`` left by processes that died (kill -9, power loss).

    A temp dir is stale when its owner file names a pid on this host that no longer runs; an
    ``.NAME.old-PID`` (the previous target mid-swap) when PID no longer runs. Temp dirs without an
    owner file (another tool, or an older encoderkit) are left alone. Says what it removed.
    """
    removed = []
    for p in sorted(target.parent.glob(f".{glob.escape(target.name)}.tmp-*")):
        pid = _dead_owner(p) if p.is_dir() and not p.is_symlink() else None
        if pid is not None:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
            say(f"removed {p}: a partial output left by process {pid}, which is no longer running")
    for p in sorted(target.parent.glob(f".{glob.escape(target.name)}.old-*")):
        pid_s = p.name.rpartition(".old-")[2]
        if pid_s.isdigit() and int(pid_s) != os.getpid() and not _pid_alive(int(pid_s)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
            say(f"removed {p}: the previous {target.name} that process {pid_s} was replacing when it stopped")
    return removed


@contextlib.contextmanager
def target_lock(target: Path, flag: str = "--out") -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``target`` exclusively (flock) while writing it; removed after.

    ``flag`` is the option that named the target, for the message.

    Raises:
        InputError: another process holds it (names its pid).
    """
    lock = target.with_name(f".{target.name}.lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise InputError(f"{target} is being written by another encoderkit process (pid {holder}); "
                             f"wait for it to finish or choose another {flag}") from None
        try:  # the file we locked must still be the one at that path (a finishing holder unlinks it)
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still holding it: a waiter re-checks the inode above
        os.close(fd)


def refuse_overlap(output: str | Path, inputs, *, flag: str = "--out") -> None:
    """Refuse an output that is, contains or lies inside any of the command's inputs.

    Writing there would delete an input (``--force`` replaces the output), change it (a file
    added inside a model directory), or read and write the same file. Paths are compared after
    resolving symlinks (``..`` and relative spellings included); an existing output that is the
    same file as an input under another name (a hard link) counts as the input.

    Args:
        inputs: ``(what, path)`` pairs; a path that is None or does not exist is skipped.
    Raises:
        InputError: naming the flag, the input and what to do.
    """
    out = Path(os.path.abspath(Path(output).expanduser()))
    out_real = out.resolve()
    for what, path in inputs:
        if path is None:
            continue
        path = Path(path).expanduser()
        if not os.path.lexists(path):
            continue
        real = path.resolve()
        same = real == out_real
        if not same and os.path.exists(out):
            with contextlib.suppress(OSError):
                same = os.path.samefile(out, path)
        if same:
            raise InputError(f"{flag} {output} is the {what} ({path}); writing it would destroy that input; "
                             f"choose another {flag}")
        if real in out_real.parents:
            raise InputError(f"{flag} {output} lies inside the {what} ({path}); writing there would change "
                             f"that input; choose a path outside it")
        if out_real in real.parents:
            raise InputError(f"{flag} {output} contains the {what} ({path}); replacing it would delete that "
                             f"input; choose another {flag}")


def refuse_special(path: str | Path, *, flag: str = "--out") -> None:
    """Refuse to replace something that is not a regular file or a directory: writing "over"
    /dev/null, a FIFO or a socket would replace the node itself (as root, the system's /dev/null).

    Raises:
        InputError: naming the flag.
    """
    try:
        st = os.stat(path)  # through a symlink: what it points at is what would be written over
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot be inspected ({e.strerror}); choose another {flag}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise InputError(f"{flag} {path} is not a regular file or directory (a device, FIFO or socket); "
                         f"refusing to replace it; choose another {flag}")


def _check_target(target: Path) -> None:
    refuse_special(target)
    cwd = Path.cwd().resolve()
    real = target.resolve()
    if real == Path(real.anchor) or real == cwd or real in cwd.parents:
        raise InputError(f"refusing to write over {target}: it is the current directory, one of its "
                         "parents, or the filesystem root; choose a new --out")


@contextlib.contextmanager
def atomic_dir(target: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``.

    The target is locked for the duration (a concurrent writer fails), stale temp dirs of dead
    processes beside it are removed first, and a failure leaves nothing behind. ``target`` may be
    an existing file or directory only with ``force``.

    Raises:
        InputError: target exists and ``force`` is False; another process is writing it; the
            target is the current directory (or holds it) or the root.
        OSError: the disk is full (ENOSPC, naming the directory) or the location is not writable.
    """
    target = Path(os.path.abspath(Path(target).expanduser()))
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target_lock(target):
        clean_stale(target)
        if os.path.lexists(target) and not force:
            raise InputError(f"{target} already exists; pass --force to replace it")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            (tmp / OWNER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the artifact should not be
            yield tmp
            (tmp / OWNER_FILE).unlink()
            old = None
            if os.path.lexists(target):
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                target.rename(old)
            tmp.rename(target)
            if old is not None:
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old, ignore_errors=True)
                else:  # a file (or link) replaced with --force
                    old.unlink()
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if not isinstance(e, (OSError, EncoderkitError, KeyboardInterrupt, SystemExit)) and _low_disk(target.parent):
                # exporters wrap ENOSPC in their own error types: say what it is, naming where
                raise OSError(errno.ENOSPC, f"No space left on device (the export failed with "
                                            f"{type(e).__name__})", str(target.parent)) from e
            raise


def _low_disk(path: Path) -> bool:
    try:
        return shutil.disk_usage(path).free < LOW_DISK_BYTES
    except OSError:
        return False


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))
