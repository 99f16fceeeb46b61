"""``--input FILE --output FILE`` for the task commands (embed, fill-mask, ...).

``encoderkit/cli.py`` calls ``add_batch_args`` on each task's parser and, when ``--input`` is
given, ``run_from_args`` instead of printing results for TEXT arguments.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InputError


def add_batch_args(parser: argparse.ArgumentParser) -> None:
    """Add the batch options to a task command's parser."""
    g = parser.add_argument_group("batch (file in, file out; instead of TEXT arguments)")
    g.add_argument("--input", default=None, metavar="FILE",
                   help=".txt (one text a line), .jsonl, .csv (with header) or .parquet")
    g.add_argument("--output", default=None, metavar="FILE", help=".parquet or .jsonl")
    g.add_argument("--text-column", default=None, help="field/column with the text (default: text)")
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
    has_input = getattr(args, "input", None) is not None
    if has_input and args.texts:
        raise InputError("give TEXT arguments or --input FILE, not both")
    if not has_input and not args.texts:
        raise InputError("give TEXT arguments or --input FILE")
    if not has_input and getattr(args, "output", None) is not None:
        raise InputError("--output needs --input")
    return has_input


def run_from_args(args: argparse.Namespace, task: str, task_kwargs: dict[str, Any]) -> None:
    """Run the batch job a task command describes; prints the summary line on stderr.

    Args:
        task: a name from ``encoderkit.batch.tasks.TASKS``.
        task_kwargs: the runtime method's keyword arguments from the command's options.
    Raises:
        InputError: --output missing, or any job error (see ``run_job``).
    """
    from . import Job, run_job

    if args.output is None:
        raise InputError("--input needs --output FILE (.parquet or .jsonl)")
    if args.engine != "ray" and (args.ray_address or args.workers):
        raise InputError("--ray-address/--workers need --engine ray")
    from ..cli import runtime_options
    from ..progress import stream

    options = runtime_options(args)
    quiet = bool(getattr(args, "quiet", False))
    job = Job(input=Path(args.input), output=Path(args.output), task=task, model=str(args.model),
              task_kwargs=task_kwargs, backend=args.backend, runtime_options=options,
              text_column=args.text_column, id_column=args.id_column, on_error=args.on_error,
              window=args.window, shard_rows=args.shard_rows, resume=args.resume, force=args.force,
              keep_shards=args.keep_shards, quiet=quiet)
    summary = run_job(job, args.engine, ray_address=args.ray_address, workers=args.workers)
    if not quiet:
        print(summary.line(), file=stream())
