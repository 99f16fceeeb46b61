"""Keep third-party chatter out of what the user sees.

Frameworks talk while we work: torch.onnx's exporter prints and warns, TensorFlow and absl log
oneDNN banners from C++, ONNX Runtime prints "EP Error ... Falling back" on stdout. During a
command, ``captured()`` points file descriptors 1 and 2 at a log file, routes Python warnings and
the ``logging`` root there too, and hands our own output the real terminal: results on
``streams.out`` (so stdout carries only results, e.g. valid ``--json``), messages and progress on
``streams.err``. Our own warnings (``EncoderkitWarning``) still reach the user. With ``verbose``
nothing is captured; otherwise the capture's last lines are shown when a command fails
(``Streams.tail``), and the file is removed at the end (and, after a kill -9, by the next
command: ``remove_stale_logs``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO


@dataclass
class Streams:
    out: TextIO
    err: TextIO
    log_path: str | None = None

    def tail(self, n: int = 20) -> str:
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def show_tail(self, n: int = 20) -> None:
        """Print the capture's last ``n`` lines to ``err`` under a heading (nothing if it is empty):
        what a failure shows of the third-party output it hid."""
        tail = self.tail(n)
        if tail:
            print(f"(last lines of captured third-party output)\n{tail.rstrip()}", file=self.err)


LOG_PREFIX = "encoderkit-"  # the capture is <tmp>/encoderkit-<pid>-<random>.log


def remove_stale_logs(directory: str | None = None) -> list[str]:
    """Remove the capture logs of encoderkit processes that no longer run (a kill -9 skips the
    ``finally`` that removes them). A log is named by its writer's pid; logs of live processes, of
    other users' processes, and files not named that way are left alone."""
    import glob
    import re

    removed = []
    for path in glob.glob(os.path.join(directory or tempfile.gettempdir(), f"{LOG_PREFIX}*-*.log")):
        m = re.fullmatch(rf"{LOG_PREFIX}(\d+)-[A-Za-z0-9_]+\.log", os.path.basename(path))
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, ValueError):
            continue  # someone else's live process, or not a pid
        with contextlib.suppress(OSError):
            if os.lstat(path).st_uid == os.getuid():
                os.unlink(path)
                removed.append(path)
    return removed


@contextlib.contextmanager
def captured(verbose: bool = False) -> Iterator[Streams]:
    """Capture third-party output for the duration of a command (see the module docstring)."""
    if verbose:
        yield Streams(sys.stdout, sys.stderr)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    remove_stale_logs()
    fd, log_path = tempfile.mkstemp(prefix=f"{LOG_PREFIX}{os.getpid()}-", suffix=".log")
    out = os.fdopen(os.dup(saved_out), "w", buffering=1, encoding="utf-8", errors="replace")
    err = os.fdopen(os.dup(saved_err), "w", buffering=1, encoding="utf-8", errors="replace")
    old_showwarning = warnings.showwarning
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)  # sys.stderr now writes into the log (fd 2)
    old_handlers, old_level = root.handlers[:], root.level
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        root.handlers = [handler]
        from .errors import EncoderkitWarning

        def show(msg, cat, fn, ln, file=None, line=None):
            if issubclass(cat, EncoderkitWarning):
                print(f"warning: {msg}", file=err)
            else:
                print(warnings.formatwarning(msg, cat, fn, ln, line), file=sys.stderr, end="")

        warnings.showwarning = show
        yield Streams(out, err, log_path)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for x in (saved_out, saved_err, fd):
            os.close(x)
        warnings.showwarning = old_showwarning
        root.handlers, root.level = old_handlers, old_level
        for stream in (out, err):  # a reader that went away (`| head -1`) is not an error of ours
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        with contextlib.suppress(OSError):
            os.unlink(log_path)
