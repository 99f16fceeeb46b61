"""The per-window step both engines share, over the task table (``encoderkit.tasks.TASKS``): each
task's record says what it calls and which columns it writes (as data); here they become Arrow.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InputError
from ..tasks import TASKS, Task
from .io import pyarrow


def arrow_type(t):
    """A task's column type (tasks.ColumnType, as data) as an Arrow type."""
    pa = pyarrow()
    if isinstance(t, str):
        return {"int64": pa.int64(), "float64": pa.float64(), "float32": pa.float32(), "string": pa.string()}[t]
    kind = t[0]
    if kind == "list":
        return pa.list_(arrow_type(t[1]))
    if kind == "vector":
        return pa.list_(arrow_type(t[1]), t[2])
    if kind == "struct":
        return pa.struct([(name, arrow_type(sub)) for name, sub in t[1]])
    raise ValueError(f"unknown column type {t!r}")


def fields(spec, task: str, kwargs: dict[str, Any]) -> list:
    """The Arrow fields of ``task``'s output columns (beside ``id``)."""
    pa = pyarrow()
    return [pa.field(name, arrow_type(t)) for name, t in get_task(task).columns(spec, kwargs)]


def columns(spec, task: str, result, kwargs: dict[str, Any]) -> list:
    """``task``'s result as Arrow arrays, one per output column."""
    pa = pyarrow()
    out = []
    for f, values in zip(fields(spec, task, kwargs), get_task(task).to_columns(result)):
        if pa.types.is_fixed_size_list(f.type):
            flat = np.ascontiguousarray(values, dtype=np.float32)
            out.append(pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), f.type.list_size))
        else:
            out.append(pa.array(values, type=f.type))
    return out


def get_task(name: str) -> Task:
    """A task a batch job can run (one with output columns).

    Raises:
        InputError: listing the batch tasks.
    """
    batchable = [t for t in TASKS.values() if t.cli]
    if name not in [t.name for t in batchable]:
        raise InputError(f"unknown batch task {name!r}; choose one of: {', '.join(t.name for t in batchable)}")
    return TASKS[name]


def check_arguments(rt, task: str, kwargs: dict[str, Any]) -> None:
    """Run the task on its probe text: a bad argument raises here, once, before any row."""
    t = get_task(task)
    t.run(rt, [t.probe(rt.spec)], **kwargs)


def output_schema(rt, task: str, kwargs: dict[str, Any], id_type: str):
    """Schema of the output rows: ``id`` then the task's columns."""
    pa = pyarrow()
    return pa.schema([pa.field("id", pa.int64() if id_type == "int64" else pa.string())]
                     + fields(rt.spec, task, kwargs))


def _row_reason(e: Exception) -> str:
    """The runtime's message about ``texts[0]`` without the index (the row is named by its line)."""
    msg = str(e)
    for prefix in ("texts[0]: ", "texts[0] "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def process_batch(rt, task: str, kwargs: dict[str, Any], batch, *, count_tokens: bool = False):
    """Run ``task`` on one window of rows; the step both engines share.

    Args:
        batch: Arrow table with ``line``, ``id``, ``text``, ``read_error`` (from the reader).
        count_tokens: fill ``tokens`` (for the tokens/s of the progress bar); costs one more
            tokenization of the window, so it is off when nobody sees the bar.
    Returns:
        Arrow table with ``line``, ``id``, ``error`` (null for good rows), ``text_prefix`` (of
        rejected rows), ``tokens`` and the task's columns (null for rejected rows), in input
        order. Rows are rejected for a reader error, an empty text, a text over the model length
        without ``truncate``, or any other ``InputError`` the task raises for that row alone.
    """
    pa = pyarrow()
    t = get_task(task)
    texts = batch.column("text").to_pylist()
    errors: list[str | None] = batch.column("read_error").to_pylist()
    tokens: list[int | None] = [None] * len(texts)
    for i, text in enumerate(texts):
        if errors[i] is None and (text is None or not text.strip()):
            errors[i] = "empty text"
    if len(t.inputs) == 2:  # two texts per row (qa: question, context): the task takes pairs
        pairs = batch.column("pair").to_pylist()
        for i, p in enumerate(pairs):
            if errors[i] is None and (p is None or not p.strip()):
                errors[i] = f"empty {t.inputs[1]}"
        texts = [(q, c) for q, c in zip(texts, pairs)]
    ok = [i for i, e in enumerate(errors) if e is None]
    if ok and count_tokens:
        plain = [" ".join(x) if isinstance(x, tuple) else x for x in texts]  # a pair counts both texts
        for i, seq in _token_counts(rt, plain, ok):
            tokens[i] = len(seq)
    result = None
    if ok:
        try:  # the common case: every row is fine, one call, no second tokenization
            result = columns(rt.spec, task, t.run(rt, [texts[i] for i in ok], **kwargs), kwargs)
        except InputError:
            ok = _find_bad_rows(rt, t, kwargs, texts, ok, errors)
            result = columns(rt.spec, task, t.run(rt, [texts[i] for i in ok], **kwargs), kwargs) if ok else None
    # spread the ok rows' results over the whole window: a null index takes a null row
    where = [None] * len(texts)
    for j, i in enumerate(ok):
        where[i] = j
    fields_ = fields(rt.spec, task, kwargs)
    cols = []
    for k, f in enumerate(fields_):
        arr = result[k] if result is not None else pa.nulls(0, f.type)
        cols.append(arr.take(pa.array(where, type=pa.int64())) if len(arr) else pa.nulls(len(texts), f.type))
    # the start of a rejected row's text goes to the rejects file beside its reason
    first = [x[0] if isinstance(x, tuple) else x for x in texts]
    prefix = [(first[i] or "")[:200] if e is not None else None for i, e in enumerate(errors)]
    return pa.table([batch.column("line"), batch.column("id"), pa.array(errors, pa.string()),
                     pa.array(prefix, pa.string()), pa.array(tokens, pa.int64()), *cols],
                    names=["line", "id", "error", "text_prefix", "tokens", *[f.name for f in fields_]])


def _find_bad_rows(rt, t: Task, kwargs: dict[str, Any], texts: list, ok: list[int],
                   errors: list[str | None]) -> list[int]:
    """Mark the rows of a window that the task refused; returns the good ones.

    Only windows holding a bad row pay for this. Over-long texts are found by the tokenizer
    (a truncating encode says which rows reach the limit; only those are encoded again
    without truncation); other task-specific problems (e.g. fill-mask without a mask token) by
    running the task on the remaining rows one by one.
    """
    if not kwargs.get("truncate", False) and len(t.inputs) == 1:  # (two-text tasks window, never cut)
        for i, seq in _token_counts(rt, texts, ok, errors):
            if len(seq) >= rt.tokenizer.max_length:
                try:
                    rt.tokenizer.encode([texts[i]], truncate=False)
                except InputError as e:
                    errors[i] = _row_reason(e)
        ok = [i for i in ok if errors[i] is None]
        try:
            t.run(rt, [texts[i] for i in ok], **kwargs)
            return ok
        except InputError:
            pass
    good = []
    for i in ok:
        try:
            t.run(rt, [texts[i]], **kwargs)
            good.append(i)
        except InputError as e:
            errors[i] = _row_reason(e)
    return good


def _token_counts(rt, texts: list, ok: list[int], errors: list[str | None] | None = None):
    """(row, truncated token ids) of the rows ``ok``. A row the tokenizer refuses on its own (e.g.
    only zero-width characters: no tokens once normalized) is skipped, and marked in ``errors``
    when given: it is a bad row like any other, never the whole window's failure."""
    try:
        return list(zip(ok, rt.tokenizer.encode([texts[i] for i in ok], truncate=True)))
    except InputError:
        pass
    out = []
    for i in ok:
        try:
            out.append((i, rt.tokenizer.encode([texts[i]], truncate=True)[0]))
        except InputError as e:
            if errors is not None:
                errors[i] = _row_reason(e)
    return out


def records_table(records, id_type: str):
    """Arrow table (``line``, ``id``, ``text``, ``read_error``) of reader ``Record``s."""
    pa = pyarrow()
    return pa.table({
        "line": pa.array([r.line for r in records], pa.int64()),
        "id": pa.array([r.id for r in records], pa.int64() if id_type == "int64" else pa.string()),
        "text": pa.array([r.text for r in records], pa.string()),
        "pair": pa.array([r.pair for r in records], pa.string()),
        "read_error": pa.array([r.error for r in records], pa.string()),
    })
