"""The `encoderkit` command line: thin -- parse, call one function, print.

One module per family of commands (``model_commands``: init-random, info, convert; ``tasks``: the
task commands generated from ``encoderkit.tasks.TASKS``; ``apps``: bench, attention, package,
finetune) plus ``common`` (context, flags, errors). Every choice offered (backends, formats,
converter options, tasks) comes from the catalog, the task table and the converters' option
dataclasses. Errors caused by input print one line on stderr and exit 2; internal failures exit 1;
no traceback unless --debug. Third-party chatter is captured (``core.logs``) and shown with
--verbose; stdout carries only results. CLI layer: the top; nothing in the package imports it.
"""
from __future__ import annotations

import argparse
import sys

from ..core import __version__
from .common import Context, Parser, common_parent, os_error, stdout_closed


def build_parser() -> argparse.ArgumentParser:
    from . import apps, model_commands, tasks

    common = common_parent()
    p = Parser(prog="encoderkit", parents=[common], description="One encoder checkpoint, every runtime, same answers.")
    p.add_argument("--version", action="version", version=f"encoderkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    p.set_defaults(_subcommands=sub.choices)
    model_commands.add_parsers(sub, [common])
    tasks.add_parsers(sub, [common])
    apps.add_parsers(sub, [common])
    return p


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parse_args``, but TEXT arguments may also follow the options (``embed MODEL --backend onnx
    "a text"``): argparse alone takes positionals only before a ``*`` positional is closed."""
    a, extras = parser.parse_known_args(argv)
    if extras and hasattr(a, "texts") and not any(x.startswith("-") for x in extras):
        a.texts = [*a.texts, *extras]
    elif extras:  # reported by the subcommand's parser: the closest flag is one of ITS flags
        sub = getattr(a, "_subcommands", {}).get(getattr(a, "command", None), parser)
        sub.error(f"unrecognized arguments: {' '.join(extras)}")
    return a


def main(argv: list[str] | None = None) -> int:
    from ..core import progress
    from ..core.errors import EncoderkitError
    from ..core.logs import captured

    parser = build_parser()
    try:
        a = parse(parser, argv)
    except EncoderkitError as e:  # a catalog lookup inside argparse's type= (e.g. --backend)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # argparse's own usage errors (exit 2) and --help/--version (exit 0)
        return e.code if isinstance(e.code, int) else 2
    debug, verbose = getattr(a, "debug", False), getattr(a, "verbose", False)
    quiet = getattr(a, "quiet", False)
    with captured(verbose=verbose or debug) as streams:
        ctx = Context(streams.out, streams.err, quiet)
        progress.configure(stream=streams.err, quiet=quiet)

        def fail(msg: str, code: int) -> int:
            if code == 1:
                streams.show_tail()
            print(msg, file=streams.err)
            return code

        try:
            a.func(a, ctx)
        except BrokenPipeError:  # `encoderkit embed ... | head -1`: the reader left; stop quietly
            stdout_closed()
            return 141
        except EncoderkitError as e:
            if debug:
                raise
            return fail(f"error: {e}", 2)
        except KeyboardInterrupt:
            return fail("interrupted", 130)
        except OSError as e:  # unreadable input, read-only target, full disk: the environment, not us
            if debug:
                raise
            return fail(f"error: {os_error(e)}", 2)
        except Exception as e:  # noqa: BLE001 - the one place that turns crashes into exit 1
            if debug:
                raise
            return fail(f"internal error: {type(e).__name__}: {e} (re-run with --debug for the traceback)", 1)
        finally:
            progress.reset()
    return 0


__all__ = ["build_parser", "main"]
