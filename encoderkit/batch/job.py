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

from ..core.errors import InputError
from ..storage.files import atomic_write_text, sha256_file
from .io import OUTPUT_FORMATS, Reader, ShardWriter, _suffix, pyarrow

ON_ERROR = ("stop", "skip")
LEDGER = "ledger.json"
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
        if Path(self.input).resolve() == Path(self.output).resolve():
            raise InputError(f"--output {self.output} is the input file")

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

    # ------------------------------------------------------------------ ledger
    def fingerprint(self) -> dict[str, Any]:
        """What must not change between a run and its resume (else the shards would mix jobs)."""
        st = Path(self.job.input).stat()
        j = self.job
        return {"input": str(Path(j.input).resolve()), "input_bytes": st.st_size, "input_mtime_ns": st.st_mtime_ns,
                "task": j.task, "task_kwargs": j.task_kwargs, "model": str(j.model), "backend": j.backend,
                "text_column": j.text_column, "pair_column": j.pair_column, "id_column": j.id_column, "shard_rows": j.shard_rows,
                "output_format": self.ext}  # on_error may change: resume a stopped run with skip

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
                --resume, or the ledger belongs to another job.
        """
        out = Path(self.job.output)
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
        try:
            ledger = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: unreadable ledger ({e}); pass --force to start over") from None
        mine = json.loads(json.dumps(self.fingerprint()))
        changed = [k for k in mine if ledger.get("job", {}).get(k) != mine[k]]
        if changed:
            raise InputError(f"{path} was written by a different job (differs in: {', '.join(changed)}); "
                             "pass --force to start over")
        self.finished = bool(ledger.get("complete"))
        # trust a shard only if its file is there with the sha256 the ledger recorded; the first
        # one that is not ends the trusted prefix and everything from it is recomputed
        for s in ledger.get("shards", []):
            files = [f for f in (s.get("file"), s.get("rejects_file")) if f]
            if all((self.dir / f).is_file() and sha256_file(self.dir / f) == s["sha256"][f] for f in files):
                self.shards.append(s)
            else:
                self.finished = False
                break
        keep = {f for s in self.shards for f in (s.get("file"), s.get("rejects_file")) if f} | {LEDGER}
        for p in self.dir.iterdir():
            if p.is_file() and p.name not in keep:
                p.unlink()

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
    def finish(self) -> tuple[int, int]:
        """Merge the shards into OUTPUT (and OUTPUT.rejects.jsonl), atomically; returns (rows, rejected)."""
        pa = pyarrow()
        out = Path(self.job.output)
        tmp = out.with_name(f".{out.name}.merge-{os.getpid()}.tmp")
        rows = sum(s["rows"] for s in self.shards)
        rejected = sum(s["rejects"] for s in self.shards)
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
