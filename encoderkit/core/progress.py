"""What the user sees while long work runs: progress bars and status lines, on the UI stream.

The UI stream is stderr (the CLI points it at the real terminal while it captures third-party
chatter, see ``encoderkit.logs``). Bars are tqdm, with rate and ETA, shown only on a terminal and
never with ``--quiet``.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

_state: dict[str, Any] = {"stream": None, "quiet": False}


def configure(*, stream: TextIO | None = None, quiet: bool | None = None) -> None:
    if stream is not None:
        _state["stream"] = stream
    if quiet is not None:
        _state["quiet"] = quiet


def reset() -> None:
    """Back to the defaults (stderr as it is at each call, not quiet): after a CLI command, so a
    later caller in the same process never writes to a stream that command's capture closed."""
    _state.update(stream=None, quiet=False)


def stream() -> TextIO:
    s = _state["stream"]
    # a stream configured by an earlier in-process CLI call may be closed since (tests' captures)
    return sys.stderr if s is None or getattr(s, "closed", False) else s


def quiet() -> bool:
    return bool(_state["quiet"])


def say(msg: str) -> None:
    """A status line (not with --quiet)."""
    if not quiet():
        print(msg, file=stream(), flush=True)


def bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", **kw: Any):
    """A tqdm bar on the UI stream; disabled when it is not a terminal or with --quiet."""
    from tqdm.auto import tqdm

    s = stream()
    disable = quiet() or not (hasattr(s, "isatty") and s.isatty())
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=s, disable=disable, leave=False,
                dynamic_ncols=True, **kw)


@contextlib.contextmanager
def status() -> Iterator[Callable[[str], None]]:
    """A one-line status with elapsed time for long steps without a count (packaging): yields
    ``say(msg)`` that replaces the line; nothing shows off a terminal or with --quiet."""
    s = stream()
    bar_ = None
    if not quiet() and hasattr(s, "isatty") and s.isatty():
        from tqdm import tqdm

        bar_ = tqdm(total=None, file=s, bar_format="{desc} [{elapsed}]", leave=False)

    def say_(msg: str) -> None:
        if bar_ is not None:
            bar_.set_description_str(msg)
            bar_.refresh()

    try:
        yield say_
    finally:
        if bar_ is not None:
            bar_.close()
