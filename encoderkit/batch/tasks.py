"""The one table of tasks a batch job can run, and the per-window step both engines share.

A row of ``TASKS`` says which runtime method to call and how its result becomes output columns.
A task is one row: a callable over the runtime and how its result becomes columns.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .io import pyarrow


@dataclass(frozen=True)
class BatchTask:
    """How a batch job runs one task.

    Attributes:
        call: ``(runtime, texts, **kwargs) -> result`` for a list of texts (the runtime method).
        fields: ``(runtime, kwargs) -> [pa.Field]``: the output columns beside ``id``.
        columns: ``(runtime, result, kwargs) -> [pa.Array]``: ``result`` as those columns, in order.
        probe: ``runtime -> text``: one acceptable text, run once before a job so a bad argument
            (pooling, layer, top_k, targets) stops it at once instead of rejecting every row.
    """

    call: Callable[..., Any]
    fields: Callable[[Any, dict[str, Any]], list]
    columns: Callable[[Any, Any, dict[str, Any]], list]
    probe: Callable[[Any], str]


def _embed_fields(rt, kw):
    pa = pyarrow()
    return [pa.field("embedding", pa.list_(pa.float32(), rt.spec.hidden_size))]


def _embed_columns(rt, emb: np.ndarray, kw):
    pa = pyarrow()
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    return [pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])]


def _fill_mask_fields(rt, kw):
    pa = pyarrow()
    pred = pa.struct([("token", pa.int64()), ("token_str", pa.string()), ("score", pa.float64()),
                      ("sequence", pa.string())])
    # one list per mask, in text order; in it the top-k predictions, best first
    return [pa.field("predictions", pa.list_(pa.list_(pred)))]


def _fill_mask_columns(rt, result, kw):
    pa = pyarrow()
    return [pa.array(result, type=_fill_mask_fields(rt, kw)[0].type)]


def _classify_fields(rt, kw):
    pa = pyarrow()
    # the top-k labels of each text, best first (pipeline("text-classification")'s shape)
    return [pa.field("predictions", pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())])))]


def _classify_columns(rt, result, kw):
    pa = pyarrow()
    return [pa.array(result, type=_classify_fields(rt, kw)[0].type)]


TASKS: dict[str, BatchTask] = {
    "embed": BatchTask(
        call=lambda rt, texts, **kw: rt.embed(texts, **kw),
        fields=_embed_fields, columns=_embed_columns, probe=lambda rt: "hello world"),
    "fill-mask": BatchTask(
        call=lambda rt, texts, **kw: rt.fill_mask(texts, **kw),
        fields=_fill_mask_fields, columns=_fill_mask_columns,
        probe=lambda rt: f"hello {rt.tokenizer.mask_token} world"),
    "classify": BatchTask(
        call=lambda rt, texts, **kw: rt.classify(texts, **kw),
        fields=_classify_fields, columns=_classify_columns, probe=lambda rt: "hello world"),
}


def get_task(name: str) -> BatchTask:
    if name not in TASKS:
        raise InputError(f"unknown batch task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[name]


def check_arguments(rt, task: str, kwargs: dict[str, Any]) -> None:
    """Run the task on its probe text: a bad argument raises here, once, before any row."""
    t = get_task(task)
    t.call(rt, [t.probe(rt)], **kwargs)


def output_schema(rt, task: str, kwargs: dict[str, Any], id_type: str):
    """Schema of the output rows: ``id`` then the task's columns."""
    pa = pyarrow()
    return pa.schema([pa.field("id", pa.int64() if id_type == "int64" else pa.string())]
                     + get_task(task).fields(rt, kwargs))


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
    ok = [i for i, e in enumerate(errors) if e is None]
    if ok and count_tokens:
        for i, seq in zip(ok, rt.tokenizer.encode([texts[i] for i in ok], truncate=True)):
            tokens[i] = len(seq)
    result = None
    if ok:
        try:  # the common case: every row is fine, one call, no second tokenization
            result = t.columns(rt, t.call(rt, [texts[i] for i in ok], **kwargs), kwargs)
        except InputError:
            ok = _find_bad_rows(rt, t, kwargs, texts, ok, errors)
            result = t.columns(rt, t.call(rt, [texts[i] for i in ok], **kwargs), kwargs) if ok else None
    # spread the ok rows' results over the whole window: a null index takes a null row
    where = [None] * len(texts)
    for j, i in enumerate(ok):
        where[i] = j
    fields = t.fields(rt, kwargs)
    cols = []
    for k, f in enumerate(fields):
        arr = result[k] if result is not None else pa.nulls(0, f.type)
        cols.append(arr.take(pa.array(where, type=pa.int64())) if len(arr) else pa.nulls(len(texts), f.type))
    # the start of a rejected row's text goes to the rejects file beside its reason
    prefix = [(texts[i] or "")[:200] if e is not None else None for i, e in enumerate(errors)]
    return pa.table([batch.column("line"), batch.column("id"), pa.array(errors, pa.string()),
                     pa.array(prefix, pa.string()), pa.array(tokens, pa.int64()), *cols],
                    names=["line", "id", "error", "text_prefix", "tokens", *[f.name for f in fields]])


def _find_bad_rows(rt, t: BatchTask, kwargs: dict[str, Any], texts: list, ok: list[int],
                   errors: list[str | None]) -> list[int]:
    """Mark the rows of a window that the task refused; returns the good ones.

    Only windows holding a bad row pay for this. Over-long texts are found by the tokenizer
    (a truncating encode says which rows reach the limit; only those are encoded again
    without truncation); other task-specific problems (e.g. fill-mask without a mask token) by
    running the task on the remaining rows one by one.
    """
    if not kwargs.get("truncate", False):
        for i, seq in zip(ok, rt.tokenizer.encode([texts[i] for i in ok], truncate=True)):
            if len(seq) >= rt.tokenizer.max_length:
                try:
                    rt.tokenizer.encode([texts[i]], truncate=False)
                except InputError as e:
                    errors[i] = _row_reason(e)
        ok = [i for i in ok if errors[i] is None]
        try:
            t.call(rt, [texts[i] for i in ok], **kwargs)
            return ok
        except InputError:
            pass
    good = []
    for i in ok:
        try:
            t.call(rt, [texts[i]], **kwargs)
            good.append(i)
        except InputError as e:
            errors[i] = _row_reason(e)
    return good


def records_table(records, id_type: str):
    """Arrow table (``line``, ``id``, ``text``, ``read_error``) of reader ``Record``s."""
    pa = pyarrow()
    return pa.table({
        "line": pa.array([r.line for r in records], pa.int64()),
        "id": pa.array([r.id for r in records], pa.int64() if id_type == "int64" else pa.string()),
        "text": pa.array([r.text for r in records], pa.string()),
        "read_error": pa.array([r.error for r in records], pa.string()),
    })
