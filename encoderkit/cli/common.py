"""What every command shares: the command context (where results and messages go), the parser
that reports a usage error in one line, the runtime flags, backend names, batch flags, and the
mapping of errors to exit codes. No module-level mutable state: ``main`` builds a ``Context`` per
call and hands it to the command.
"""
from __future__ import annotations

import argparse
import difflib
import errno
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO


@dataclass
class Context:
    """One command's streams: results on ``out`` (the real stdout while third-party output is
    captured), messages and progress on ``err``."""

    out: TextIO
    err: TextIO
    quiet: bool = False

    def emit(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.err, flush=True)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is ONE line naming what to do (the valid choices, the closest
    flag for a misspelt one), never the usage block; exit 2."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            known = [o for a in self._actions for o in a.option_strings]
            hints = []
            for arg in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(arg.split("=")[0], known, n=1, cutoff=0.6)
                if close:
                    hints.append(f"{arg} (did you mean {close[0]}?)")
            if hints:
                message = "unrecognized arguments: " + ", ".join(hints)
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def common_parent() -> argparse.ArgumentParser:
    """--debug, --verbose, --quiet: every subcommand takes them."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show third-party warnings and logs (exporters, frameworks)")
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or status lines")
    return common


def backend_help() -> str:
    from ..backends.catalog import BACKENDS

    return "backend: " + ", ".join(BACKENDS) + " (default: torch for a checkpoint, else the first the directory holds)"


def backend_name(value: str) -> str:
    from ..backends.catalog import backend

    return backend(value).name  # UnknownNameError (exit 2) lists the valid names


def add_runtime_args(s: argparse.ArgumentParser, *, backend_type=backend_name, backend_help_text: str | None = None,
                     truncate: bool = True) -> None:
    """The flags that load a model on a backend (every command that runs one takes them)."""
    s.add_argument("--backend", default=None, type=backend_type, help=backend_help_text or backend_help())
    s.add_argument("--threads", type=int, default=None, help="intra-op threads (positive)")
    s.add_argument("--max-tokens", type=int, default=None, help="token budget per batch (positive)")
    if truncate:
        s.add_argument("--truncate", action="store_true", help="cut texts longer than the model")
    s.add_argument("--allow-pickle", action="store_true",
                   help="read pickle weights (pytorch_model.bin) with torch.load(weights_only=True)")
    s.add_argument("--trust-artifact", action="store_true",
                   help="load a TF SavedModel even if it is not provably one encoderkit exported (it runs code)")


def runtime_options(a: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for key in ("threads", "max_tokens"):
        if getattr(a, key, None) is not None:
            opts[key] = getattr(a, key)
    if getattr(a, "allow_pickle", False):
        opts["allow_pickle"] = True
    if getattr(a, "trust_artifact", False):
        opts["trust_artifact"] = True
    return opts


def load_runtime(a: argparse.Namespace):
    from ..backends.loading import load

    return load(a.model, a.backend, **runtime_options(a))


# ------------------------------------------------------------------ batch: --input FILE --output FILE
def add_batch_args(parser: argparse.ArgumentParser, inputs: tuple[str, ...] = ("text",)) -> None:
    """Add the batch options to a task command's parser (``inputs``: the task's texts per row)."""
    g = parser.add_argument_group("batch (file in, file out; instead of TEXT arguments)")
    g.add_argument("--input", default=None, metavar="FILE",
                   help=".txt (one text a line), .jsonl, .csv (with header) or .parquet")
    g.add_argument("--output", default=None, metavar="FILE", help=".parquet or .jsonl")
    if len(inputs) == 1:
        g.add_argument("--text-column", default=None, help="field/column with the text (default: text)")
    else:  # two texts a row (qa): one column each
        g.add_argument(f"--{inputs[0]}-column", dest="text_column", default=inputs[0],
                       help=f"field/column with the {inputs[0]} (default: {inputs[0]})")
        g.add_argument(f"--{inputs[1]}-column", dest="pair_column", default=inputs[1],
                       help=f"field/column with the {inputs[1]} (default: {inputs[1]})")
    g.add_argument("--id-column", default=None, help="field/column with the row id (default: the line number)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from its last finished shard")
    g.add_argument("--engine", default="local", choices=["local", "ray"])
    g.add_argument("--ray-address", default=None, help="join this Ray cluster (default: a local one on 127.0.0.1)")
    g.add_argument("--workers", type=int, default=None, help="Ray actors, each loading the model once (default 2)")
    g.add_argument("--on-error", default="stop", choices=["stop", "skip"],
                   help="bad rows: stop with file:line (default), or skip them into OUTPUT.rejects.jsonl")
    g.add_argument("--window", type=int, default=1000, help="rows sorted by length and run together")
    g.add_argument("--shard-rows", type=int, default=10000, help="input rows per output shard (unit of --resume)")
    g.add_argument("--keep-shards", action="store_true", help="keep OUTPUT.shards/ after the merge")
    g.add_argument("--force", action="store_true", help="replace OUTPUT and any unfinished run")


def wants_batch(args: argparse.Namespace) -> bool:
    """True when the command reads ``--input`` instead of TEXT arguments.

    Raises:
        InputError: both TEXT and --input, or neither.
    """
    from ..core.errors import InputError

    has_input = getattr(args, "input", None) is not None
    if has_input and args.texts:
        raise InputError("give TEXT arguments or --input FILE, not both")
    if not has_input and not args.texts:
        raise InputError("give TEXT arguments or --input FILE")
    if not has_input and getattr(args, "output", None) is not None:
        raise InputError("--output needs --input")
    return has_input


def run_batch(args: argparse.Namespace, ctx: Context, task: str, task_kwargs: dict[str, Any]) -> None:
    """Run the batch job a task command describes; prints the summary line on stderr.

    Raises:
        InputError: --output missing, or any job error (see ``batch.run_job``).
    """
    from ..batch import Job, run_job
    from ..core.errors import InputError

    if args.output is None:
        raise InputError("--input needs --output FILE (.parquet or .jsonl)")
    if args.engine != "ray" and (args.ray_address or args.workers):
        raise InputError("--ray-address/--workers need --engine ray")
    job = Job(input=Path(args.input), output=Path(args.output), task=task, model=str(args.model),
              task_kwargs=task_kwargs, backend=args.backend, runtime_options=runtime_options(args),
              text_column=args.text_column, pair_column=getattr(args, "pair_column", None),
              id_column=args.id_column, on_error=args.on_error,
              window=args.window, shard_rows=args.shard_rows, resume=args.resume, force=args.force,
              keep_shards=args.keep_shards, quiet=ctx.quiet)
    summary = run_job(job, args.engine, ray_address=args.ray_address, workers=args.workers)
    ctx.say(summary.line())


# ------------------------------------------------------------------ errors -> one line and an exit code
def os_error(e: OSError) -> str:
    where = e.filename or ""
    what = e.strerror or str(e)
    hint = {errno.ENOSPC: "free disk space", errno.EACCES: "choose a writable location",
            errno.EROFS: "choose a writable location", errno.EPERM: "choose a writable location",
            errno.ENOENT: "check the path", errno.ENOTDIR: "check the path",
            errno.EISDIR: "give a file, not a directory"}.get(e.errno, "check the path and the disk")
    return f"{where}: {what}; {hint}" if where else f"{what}; {hint}"


def stdout_closed() -> None:
    """stdout's reader went away (``| head -1``): stop quietly, as Unix tools do; later flushes
    (at exit) go nowhere."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
