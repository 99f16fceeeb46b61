"""The task subcommands (fill-mask, embed, classify, ...): one per row of ``encoderkit.tasks.TASKS``
with ``cli=True``, their flags generated from the row's options. Each runs on TEXT arguments or, with
``--input/--output``, as a batch job writing the row's columns.
"""
from __future__ import annotations

import argparse
from typing import Any

from .common import Context, add_batch_args, add_runtime_args, load_runtime, run_batch, wants_batch


def add_parsers(sub, parents: list[argparse.ArgumentParser]) -> None:
    from ..tasks import TASKS

    for task in TASKS.values():
        if not task.cli:
            continue
        s = sub.add_parser(task.name, parents=parents, help=task.summary)
        s.add_argument("model", help="checkpoint dir, hub id, packaged name (minilm) or convert output"
                       + (", or a probe dir (classify)" if task.name == "classify" else ""))
        if task.inputs == ("text",):
            s.add_argument("texts", nargs="*", metavar="TEXT", help="texts (or --input FILE)")
        else:  # two texts per input (qa): a flag each, paired in order
            for name in task.inputs:
                s.add_argument(f"--{name}", dest=f"input_{name}", nargs="+", default=None, metavar=name.upper(),
                               help=f"the {name}(s), paired in order (or --input FILE)")
        add_runtime_args(s, truncate=task.inputs == ("text",))
        for o in task.options:
            s.add_argument(o.flag, **o.argparse_kwargs())
        if task.name in EXTRA_ARGS:
            EXTRA_ARGS[task.name](s)
        s.add_argument("--json", action="store_true", help="the result as JSON (the shape transformers' pipeline returns)")
        add_batch_args(s, task.inputs)
        s.set_defaults(func=run_task, task=task.name)


def run_task(a: argparse.Namespace, ctx: Context) -> None:
    from ..tasks import TASKS, dumps

    task = TASKS[a.task]
    options: dict[str, Any] = {o.dest: getattr(a, o.dest) for o in task.options}
    if task.inputs != ("text",):
        a.texts = _paired(a, task.inputs)
    options["truncate"] = getattr(a, "truncate", False)
    if wants_batch(a):
        check = BATCH_CHECKS.get(task.name)
        if check:
            check(a)
        return run_batch(a, ctx, task.name, {k: v for k, v in options.items() if k not in PER_TEXT_OPTIONS})
    rt = LOADERS.get(task.name, lambda a: load_runtime(a))(a)
    result = rt_call(rt, task, a.texts, options)
    if a.json:
        ctx.emit(dumps(task.name, result))
        return
    texts = a.texts if getattr(a, "pairs", None) is None else [f"{t} || {p}" for t, p in zip(a.texts, a.pairs)]
    for line in task.render(texts, result):
        ctx.emit(line)


def _paired(a: argparse.Namespace, inputs: tuple[str, ...]) -> list[tuple[str, ...]]:
    """``--question Q1 Q2 --context C1 C2`` -> [(Q1, C1), (Q2, C2)]; [] when neither is given."""
    from ..core.errors import InputError

    given = [getattr(a, f"input_{name}") for name in inputs]
    if all(g is None for g in given):
        return []
    if any(g is None for g in given) or len({len(g) for g in given}) != 1:
        raise InputError(f"give as many {' as '.join('--' + n for n in inputs)} values (one per input)")
    return list(zip(*given))


def rt_call(rt, task, texts: list[str], options: dict[str, Any]):
    """The task on a runtime (or on a probe classifier, which offers the same method)."""
    if hasattr(rt, "spec"):
        return task.run(rt, texts, **options)
    return getattr(rt, task.name.replace("-", "_"))(texts, **options)


# ------------------------------------------------------------------ the few things one task adds
def _classify_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--base", default=None, help="(probe) the base model to embed with, e.g. its convert output")


def _classify_loader(a: argparse.Namespace):
    """A probe directory classifies through its base model's embeddings (finetune's probe); any
    other model through its own classification head."""
    from ..core.errors import InputError
    from ..finetune import load_classifier
    from .common import runtime_options

    if a.pairs is not None and len(a.pairs) != len(a.texts):
        raise InputError(f"{len(a.texts)} texts but {len(a.pairs)} --pair texts; give one pair text per text")
    return load_classifier(a.model, a.backend, base=a.base, **runtime_options(a))


def _classify_batch(a: argparse.Namespace) -> None:
    from ..core.errors import InputError

    if a.pairs is not None or a.base is not None:
        raise InputError("--input runs single texts on a model with a classification head (no --pair, no probe --base)")


EXTRA_ARGS = {"classify": _classify_args}
LOADERS = {"classify": _classify_loader}
BATCH_CHECKS = {"classify": _classify_batch}
PER_TEXT_OPTIONS = ("pairs",)  # options that only TEXT arguments take
