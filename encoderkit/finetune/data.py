"""Labelled training data: JSON Lines or CSV in, validated examples out.

Every problem a user can cause names the file and the row (1-based line of a .jsonl, 1-based data
row of a .csv after its header): missing file, missing column, empty text, a label that is not a
string or an integer, a non-UTF-8 byte, or a data set with one class only.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError

FORMATS = (".jsonl", ".csv")


@dataclass(frozen=True)
class Examples:
    texts: tuple[str, ...]
    pairs: tuple[str, ...] | None  # the second text of each pair, or None
    labels: tuple[str, ...]  # label names as strings (ints are written as their decimal form)
    source: str
    label_kind: str = "string"  # "integer" or "string": one file never mixes them

    def __len__(self) -> int:
        return len(self.texts)

    def label_ids(self, names: tuple[str, ...]) -> list[int]:
        """Indices of the labels in ``names``.

        Raises:
            InputError: a label not in ``names`` (e.g. an eval label the training set never had).
        """
        index = {n: i for i, n in enumerate(names)}
        for row, lab in enumerate(self.labels, 1):
            if lab not in index:
                raise InputError(f"{self.source}: row {row}: label {lab!r} is not one of the training "
                                 f"labels ({', '.join(names)})")
        return [index[lab] for lab in self.labels]


def label_names(train: Examples) -> tuple[str, ...]:
    """The sorted label set (integers in numeric order, as strings).

    Raises:
        InputError: fewer than two classes.
    """
    names = set(train.labels)
    if len(names) < 2:
        raise InputError(f"{train.source}: every row has the label {next(iter(names))!r}; a classifier "
                         "needs at least two classes")
    numeric = all(n.lstrip("-").isdigit() for n in names)
    return tuple(sorted(names, key=(lambda n: int(n)) if numeric else None))


def read_data_file(path: Path, expected: str) -> bytes:
    """The bytes of a data file (``expected``: what it should be, for the messages).

    Raises:
        InputError: missing, a directory, or a FIFO / device (it would block or never end).
    """
    if path.exists() and not path.is_dir() and not path.is_file():
        raise InputError(f"{path}: not a regular file, expected {expected}")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected {expected}") from None


def _rows(path: Path):
    """(row number, dict) of a .jsonl or .csv file."""
    raw = read_data_file(path, "a .jsonl or .csv file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        row = line - 1 if path.suffix == ".csv" else line
        raise InputError(f"{path}: row {row}: not UTF-8 (byte 0x{raw[e.start]:02x}); save the file as UTF-8") from None
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}: row {n}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise InputError(f"{path}: row {n}: JSON nested too deeply") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}: row {n}: expected a JSON object")
            yield n, obj
    elif path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        for n, obj in enumerate(reader, 1):
            yield n, obj
    else:
        raise InputError(f"{path}: unknown data format {path.suffix!r}; use {' or '.join(FORMATS)}")


def _check_unicode(text: str, path: Path, row: int, column: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a JSON "\ud800" escape: a lone surrogate no tokenizer can take
        raise InputError(f"{path}: row {row}: column {column!r} is not valid Unicode (a lone surrogate escape "
                         "such as \\ud800)") from None


def read_examples(path: str | Path, *, text_column: str = "text", pair_column: str | None = None,
                  label_column: str = "label") -> Examples:
    """Read and validate labelled examples.

    Raises:
        InputError: naming the file and row of the first problem.
    """
    path = Path(path)
    texts, pairs, labels = [], [], []
    first_of: dict[str, tuple[int, object]] = {}  # label kind -> (row, label) where it first appears
    wanted = [text_column, label_column] + ([pair_column] if pair_column else [])
    for n, obj in _rows(path):
        for col in wanted:
            if col not in obj:
                raise InputError(f"{path}: row {n}: no column {col!r} (it has: {', '.join(map(str, obj))})")
        t = obj[text_column]
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"{path}: row {n}: column {text_column!r} must be a non-empty string, got {t!r}")
        _check_unicode(t, path, n, text_column)
        texts.append(t)
        if pair_column:
            p = obj[pair_column]
            if not isinstance(p, str) or not p.strip():
                raise InputError(f"{path}: row {n}: column {pair_column!r} must be a non-empty string, got {p!r}")
            _check_unicode(p, path, n, pair_column)
            pairs.append(p)
        lab = obj[label_column]
        if isinstance(lab, bool) or not isinstance(lab, (str, int)) or (isinstance(lab, str) and not lab.strip()):
            raise InputError(f"{path}: row {n}: label {lab!r} must be a non-empty string or an integer")
        kind = "integer" if isinstance(lab, int) else "string"
        first_of.setdefault(kind, (n, lab))
        if len(first_of) > 1:  # 1 and "1" would silently be one class (or two, by another reader)
            other = "string" if kind == "integer" else "integer"
            raise InputError(f"{path}: row {n}: label {lab!r} is {'an' if kind == 'integer' else 'a'} {kind}, "
                             f"but row {first_of[other][0]}'s label {first_of[other][1]!r} is "
                             f"{'an' if other == 'integer' else 'a'} {other}; use one type for every label")
        labels.append(str(lab))
    if not texts:
        raise InputError(f"{path}: no examples")
    return Examples(tuple(texts), tuple(pairs) if pair_column else None, tuple(labels), str(path),
                    next(iter(first_of)))
