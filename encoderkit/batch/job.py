"""What both engines share: the job description, numbered shards with a progress ledger,
resume, the final merge, the progress bar and the summary line.

Layout while a job runs (``OUT`` is ``--output``)::

    OUT.shards/ledger.json               the job's fingerprint and every finished shard (sha256)
    OUT.shards/part-00000.parquet         results of input records [0, shard_rows), atomically
    OUT.shards/part-00000.rejects.jsonl   rows of that range set aside (--on-error skip)

A shard covers a fixed range of input records, so a resumed run knows where to start without
reading any output. When the last shard is written the shards are merged into ``OUT`` (and
``OUT.rejects.jsonl``), both renamed into place, and ``OUT.shards`` is removed.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ArtifactError, InputError
from ..storage.files import atomic_write_text, sha256_file
from ..storage.manifest import read_bounded
from .io import OUTPUT_FORMATS, Reader, ShardWriter, _suffix, pyarrow

ON_ERROR = ("stop", "skip")
LEDGER = "ledger.json"
LEDGER_MAX_BYTES = 64 << 20  # a ledger lists shards: ~200 bytes each
# Test hooks (JSON in this variable): {"delay_s": seconds slept per window, "pid_dir": a folder
# where each Ray actor writes a file named by its pid}. The kill/resume tests need a run that is
# still going when they strike, and the pid of an actor to kill.
TEST_HOOKS_ENV = "ENCODERKIT_BATCH_TEST_HOOKS"


def test_hooks() -> dict[str, Any]:
    raw = os.environ.get(TEST_HOOKS_ENV)
    return json.loads(raw) if raw else {}


@dataclass(frozen=True)
class Job:
    """One file-in, file-out batch job.

    Attributes:
        input: .txt/.jsonl/.csv/.parquet file.
        output: .parquet or .jsonl file (written when the job completes).
        task: a name from ``encoderkit.batch.tasks.TASKS`` ("embed", "fill-mask").
        task_kwargs: the runtime method's keyword arguments (pooling, top_k, truncate, ...).
        model, backend, runtime_options: what ``encoderkit.load`` gets (each Ray actor too).
        window: rows handed to the runtime at once; it sorts them by length into token-budget
            batches padded to their own longest row (dynamic padding, length bucketing).
        shard_rows: input records per output shard (the unit of resume).
        on_error: "stop" at the first bad row, or "skip" it into OUTPUT.rejects.jsonl.
    """

    input: Path
    output: Path
    task: str
    model: str
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    backend: str | None = None
    runtime_options: dict[str, Any] = field(default_factory=dict)
    text_column: str | None = None
    pair_column: str | None = None  # two-text tasks (qa): the second text's field
    id_column: str | None = None
    on_error: str = "stop"
    window: int = 1000
    shard_rows: int = 10000
    resume: bool = False
    force: bool = False
    keep_shards: bool = False
    quiet: bool = False

    def check(self) -> None:
        """Raises InputError for arguments no engine can run."""
        _suffix(Path(self.output), OUTPUT_FORMATS, "--output")
        if self.on_error not in ON_ERROR:
            raise InputError(f"--on-error must be one of {', '.join(ON_ERROR)}, got {self.on_error!r}")
        for name in ("window", "shard_rows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
        from ..storage.checkpoint import local_model_path
        from ..storage.files import refuse_overlap, refuse_special

        inputs = [("--input file", Path(self.input)), ("model", local_model_path(self.model))]
        # the output, its shards folder (removed by --force) and its rejects file
        for path in (Path(self.output), self.shards_dir, self.rejects_path):
            refuse_overlap(path, inputs, flag="--output")
            refuse_special(path, flag="--output")

    @property
    def rejects_path(self) -> Path:
        return Path(str(self.output) + ".rejects.jsonl")

    @property
    def shards_dir(self) -> Path:
        return Path(str(self.output) + ".shards")


def load_runtime(job: Job):
    from ..backends.loading import load

    return load(job.model, job.backend, **job.runtime_options)


@dataclass(frozen=True)
class Summary:
    """What a finished job did (``rows``/``rejected`` count the whole output, resumed shards too)."""

    task: str
    output: str
    rows: int
    rejected: int
    resumed_records: int
    seconds: float
    records_this_run: int
    tokens_this_run: int | None  # counted only while a progress bar shows tokens/s
    engine: str = "local"

    def line(self) -> str:
        rate = self.records_this_run / self.seconds if self.seconds > 0 else 0.0
        tok = ""
        if self.tokens_this_run is not None and self.seconds > 0:
            tok = f", {self.tokens_this_run / self.seconds:.0f} tokens/s"
        resumed = f", {self.resumed_records} records resumed from shards" if self.resumed_records else ""
        return (f"{self.task}: {self.rows} rows -> {self.output} ({self.rejected} rejected{resumed}); "
                f"{self.records_this_run} records in {self.seconds:.1f} s, {rate:.1f} rows/s"
                f"{tok} [{self.engine}]")


class Progress:
    """tqdm bar on stderr with rows/s, tokens/s and ETA; off with --quiet or when stderr is no TTY."""

    def __init__(self, job: Job, reader: Reader, initial: int):
        from ..core.progress import quiet, stream

        out = stream()  # the real terminal while the CLI captures third-party output
        self.enabled = not (job.quiet or quiet()) and hasattr(out, "isatty") and out.isatty()
        self.tokens = 0
        self.records = 0
        self.start = time.perf_counter()
        self._bar = None
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=reader.count(), initial=initial, unit="row", file=out,
                             desc=job.task, dynamic_ncols=True)

    def update(self, records: int, tokens: int) -> None:
        self.records += records
        self.tokens += tokens
        if self._bar is not None:
            self._bar.update(records)
            elapsed = max(time.perf_counter() - self.start, 1e-9)
            self._bar.set_postfix_str(f"{self.tokens / elapsed:,.0f} tok/s", refresh=False)

    def close(self) -> float:
        if self._bar is not None:
            self._bar.close()
        return time.perf_counter() - self.start


class ShardStore:
    """Numbered shards of one job, the ledger that lists the finished ones, and the final merge."""

    def __init__(self, job: Job, reader: Reader):
        self.job = job
        self.reader = reader
        self.dir = job.shards_dir
        self.ext = Path(job.output).suffix.lower()
        self.shards: list[dict[str, Any]] = []
        self.schema = None
        self.finished = False
        self._fp: dict[str, Any] | None = None

    # ------------------------------------------------------------------ ledger
    def fingerprint(self) -> dict[str, Any]:
        """What must not change between a run and its resume (else the shards would mix jobs).

        The model is identified by its content (``model_identity``), not by how its path was
        spelt: the same model given as a relative path resumes, another model at the same path
        does not. Computed once per run (``open``), never cached across runs.
        """
        if self._fp is None:
            st = Path(self.job.input).stat()
            j = self.job
            self._fp = {"input": str(Path(j.input).resolve()), "input_bytes": st.st_size,
                        "input_mtime_ns": st.st_mtime_ns, "task": j.task, "task_kwargs": j.task_kwargs,
                        "model": model_identity(j.model), "backend": j.backend,
                        "runtime_options": j.runtime_options, "text_column": j.text_column,
                        "pair_column": j.pair_column, "id_column": j.id_column, "shard_rows": j.shard_rows,
                        "output_format": self.ext}  # on_error may change: resume a stopped run with skip
        return self._fp

    def _write_ledger(self, complete: bool = False) -> None:
        atomic_write_text(self.dir / LEDGER, json.dumps(
            {"encoderkit_batch_ledger": 1, "job": self.fingerprint(), "complete": complete,
             "records_done": self.records_done, "shards": self.shards}, indent=1) + "\n")

    @property
    def records_done(self) -> int:
        return sum(s["records"] for s in self.shards)

    def open(self) -> int:
        """Prepare the shard folder (fresh, or resumed); returns the input records already done.

        Raises:
            InputError: the output exists (without --force), an unfinished run is there without
                --resume, or the ledger belongs to another job (or is not a ledger).
        """
        out = Path(self.job.output)
        self.fingerprint()  # before anything is removed: an unreadable model fails here
        if self.job.force:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif self.dir.exists():
            if not self.job.resume:
                raise InputError(f"{self.dir} holds an unfinished run; pass --resume to continue it "
                                 "or --force to start over")
            self._load_ledger()
            if self.finished:
                if out.exists():
                    raise InputError(f"{out} exists (that job finished); pass --force to recompute it")
                self.finished = False  # the merge did not land: merge again
        elif out.exists():
            raise InputError(f"{out} already exists; pass --force to replace it")
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".*.tmp"):  # a killed run's half-written shard
            stale.unlink()
        self._write_ledger()
        return self.records_done

    def _load_ledger(self) -> None:
        path = self.dir / LEDGER
        hint = "pass --force to start over"
        try:
            ledger = json.loads(read_bounded(path, LEDGER_MAX_BYTES, what=LEDGER).decode("utf-8"))
        except (ArtifactError, OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise InputError(f"{path}: unreadable ledger ({e}); {hint}") from None
        if not isinstance(ledger, dict) or ledger.get("encoderkit_batch_ledger", 1) != 1 \
                or not isinstance(ledger.get("job"), dict) or not isinstance(ledger.get("shards"), list):
            raise InputError(f"{path}: not an encoderkit batch ledger; {hint}")
        mine = json.loads(json.dumps(self.fingerprint()))
        changed = [k for k in mine if ledger["job"].get(k) != mine[k]]
        if changed:
            raise InputError(f"{path} was written by a different job (differs in: {', '.join(changed)}); {hint}")
        self.finished = ledger.get("complete") is True
        # trust a shard only if its entry is consistent and its files are there with the sha256 and
        # row counts the ledger recorded; the first one that is not ends the trusted prefix and
        # everything from it is recomputed
        for i, s in enumerate(ledger["shards"]):
            if not self._trusted(i, s):
                self.finished = False
                break
            self.shards.append(s)
            if s["records"] < self.job.shard_rows:  # the input ended in this shard: nothing can follow
                break
        keep = {f for s in self.shards for f in (s.get("file"), s.get("rejects_file")) if f} | {LEDGER}
        for p in self.dir.iterdir():
            if p.is_file() and p.name not in keep:
                p.unlink()

    def _trusted(self, index: int, s: Any) -> bool:
        """One ledger entry: the shard ``index`` this job writes, whole, its files unchanged."""
        def count(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 0

        if not isinstance(s, dict) or s.get("index") != index or isinstance(s.get("index"), bool):
            return False
        name, rname = f"part-{index:05d}{self.ext}", f"part-{index:05d}.rejects.jsonl"
        rows, rejects, records = s.get("rows"), s.get("rejects"), s.get("records")
        if s.get("file") != name or not all(count(v) for v in (rows, rejects, records)):
            return False
        if not 0 < records <= self.job.shard_rows or rows + rejects != records:
            return False
        if s.get("rejects_file") != (rname if rejects else None):
            return False
        tokens = s.get("tokens")
        if tokens is not None and not count(tokens):
            return False
        files = [name] + ([rname] if rejects else [])
        sha = s.get("sha256")
        if not isinstance(sha, dict) or set(sha) != set(files):
            return False
        for f in files:
            p = self.dir / f
            if p.is_symlink() or not p.is_file() or sha256_file(p) != sha[f]:
                return False
        try:  # the rows the files hold (a ledger edited together with its hashes)
            return _rows_in(self.dir / name) == rows and (not rejects or _rows_in(self.dir / rname) == rejects)
        except Exception:  # noqa: BLE001 - an unreadable shard is simply not trusted (recomputed)
            return False

    # ------------------------------------------------------------------ shards
    def writer(self, index: int) -> ShardWriter:
        return ShardWriter(self.dir / f"part-{index:05d}{self.ext}", self.schema)

    def split(self, out) -> tuple[Any, list[dict[str, Any]]]:
        """Split a processed window into the rows to write (``id`` + task columns) and the rejects."""
        import pyarrow.compute as pc

        bad = pc.is_valid(out.column("error"))
        good = out.filter(pc.invert(bad)).select(self.schema.names)
        rej = out.filter(bad).select(["line", "id", "error", "text_prefix"]).to_pylist()
        rejects = [{"line": r["line"], "id": r["id"], "reason": r["error"], "text": r["text_prefix"]} for r in rej]
        return good, rejects

    def stop_if_rejects(self, rejects: list[dict[str, Any]]) -> None:
        """With --on-error stop, the first bad row ends the job, naming its file and line."""
        if rejects and self.job.on_error == "stop":
            r = rejects[0]
            skip = f"--on-error skip to set bad rows aside in {self.job.rejects_path.name}"
            if self.shards:
                hint = (f"{len(self.shards)} finished shard(s) kept: rerun with --resume {skip}, "
                        "or fix the file and rerun with --force")
            else:  # nothing worth resuming: leave no unfinished run behind
                shutil.rmtree(self.dir, ignore_errors=True)
                hint = f"fix the row, or rerun with {skip}"
            raise InputError(f"{self.reader.where(r['line'])}: {r['reason']} ({hint})")

    def commit(self, index: int, writer: ShardWriter, rejects: list[dict[str, Any]], records: int,
               tokens: int) -> None:
        """Rename a finished shard into place and record it in the ledger."""
        path = writer.commit()
        entry = {"index": index, "file": path.name, "rows": writer.rows, "records": records, "tokens": tokens,
                 "rejects": len(rejects), "rejects_file": None, "sha256": {path.name: sha256_file(path)}}
        if rejects:
            rp = self.dir / f"part-{index:05d}.rejects.jsonl"
            atomic_write_text(rp, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects))
            entry["rejects_file"] = rp.name
            entry["sha256"][rp.name] = sha256_file(rp)
        self.shards.append(entry)
        self._write_ledger()

    # ------------------------------------------------------------------ the end
    def _nothing_produced(self, rejected: int) -> None:
        """No row came out: write no output, keep the rejects (the reasons), and say so.

        Raises:
            InputError: always (the job produced nothing; exit 2).
        """
        job = self.job
        if rejected:
            _concat([self.dir / s["rejects_file"] for s in self.shards if s["rejects_file"]], job.rejects_path)
        if not job.keep_shards:
            shutil.rmtree(self.dir, ignore_errors=True)
        if rejected:
            raise InputError(f"nothing written to {job.output}: all {rejected} rows of {job.input} were rejected "
                             f"(the reasons are in {job.rejects_path})")
        raise InputError(f"nothing written to {job.output}: {job.input} holds no records")

    def finish(self) -> tuple[int, int]:
        """Merge the shards into OUTPUT (and OUTPUT.rejects.jsonl), atomically; returns (rows, rejected)."""
        pa = pyarrow()
        out = Path(self.job.output)
        tmp = out.with_name(f".{out.name}.merge-{os.getpid()}.tmp")
        rows = sum(s["rows"] for s in self.shards)
        rejected = sum(s["rejects"] for s in self.shards)
        if rows == 0:
            self._nothing_produced(rejected)
        try:
            if self.ext == ".parquet":
                # one row group at a time: memory stays one window whatever the corpus size
                with pa.parquet.ParquetWriter(tmp, self.schema) as w:
                    for s in self.shards:
                        pf = pa.parquet.ParquetFile(self.dir / s["file"])
                        for g in range(pf.num_row_groups):
                            w.write_table(pf.read_row_group(g).cast(self.schema))
            else:
                _concat([self.dir / s["file"] for s in self.shards], tmp)
            rtmp = None
            if rejected:
                rtmp = tmp.with_name(tmp.name + ".rejects")
                _concat([self.dir / s["rejects_file"] for s in self.shards if s["rejects_file"]], rtmp)
            os.replace(tmp, out)
            if rtmp is not None:
                os.replace(rtmp, self.job.rejects_path)
            elif self.job.rejects_path.exists():
                self.job.rejects_path.unlink()  # from an earlier run of this output
        except BaseException:
            for p in (tmp, tmp.with_name(tmp.name + ".rejects")):
                if p.exists():
                    p.unlink()
            raise
        self._write_ledger(complete=True)
        if not self.job.keep_shards:
            shutil.rmtree(self.dir, ignore_errors=True)
        return rows, rejected


def _rows_in(path: Path) -> int:
    """Rows of a shard file: a .parquet's metadata, or the lines of a .jsonl."""
    if path.suffix == ".parquet":
        return pyarrow().parquet.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def model_identity(model: str) -> dict[str, Any]:
    """The model a job runs, by content: a `convert` output by the sha256 of its manifest.json
    (which holds the sha256 of every file, checked when a backend loads), a checkpoint by the
    sha256 of its weight files, config.json and tokenizer files. Nothing is cached: a model
    replaced at the same path is another model.

    Raises:
        CheckpointError / ArtifactError: the model cannot be found or read.
    """
    from ..core.tokenization import TOKENIZER_FILES
    from ..storage.checkpoint import checkpoint_directory, read_json, resolve_model
    from ..storage.manifest import MANIFEST, read_manifest

    path = resolve_model(model)
    manifest = read_manifest(path)
    if isinstance(manifest, dict) and manifest.get("kind") == "convert":
        return {"kind": "convert", "manifest_sha256": sha256_file(path / MANIFEST)}
    directory = checkpoint_directory(model)
    names = ["config.json", *TOKENIZER_FILES, "model.safetensors", "pytorch_model.bin"]
    index = directory / "model.safetensors.index.json"
    if not (directory / "model.safetensors").is_file() and index.is_file():
        weight_map = read_json(index).get("weight_map")
        shards = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        names += [index.name, *(s for s in shards if isinstance(s, str))]
    files = {}
    for name in names:  # (a hub cache holds these as symlinks to its blobs: their content counts)
        if Path(name).is_absolute() or ".." in Path(name).parts:
            continue  # a shard outside the directory: loading refuses it
        p = directory / name
        if p.is_file():
            files[name] = sha256_file(p)
    return {"kind": "checkpoint", "files": files}


def _concat(paths: list[Path], dst: Path) -> None:
    with open(dst, "wb") as f:
        for p in paths:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
        f.flush()
        os.fsync(f.fileno())


def job_dict(job: Job) -> dict[str, Any]:
    """The job as plain data (to ship to Ray actors)."""
    d = asdict(job)
    d["input"], d["output"] = str(job.input), str(job.output)
    return d
