"""The Ray Data engine: the same job as ``local``, its model work spread over an actor pool.

    driver: stream the input -> staging Parquet parts (one per shard: line, id, text, read error)
    Ray:    read parts -> map_batches(_BatchActor, ActorPoolStrategy(N))   (order preserved)
    driver: iter_batches -> the same numbered shards, ledger, rejects and merge as ``local``

Each actor loads the runtime once and runs ``tasks.process_batch`` -- the local engine's own
step -- so both engines answer alike row for row. Results come back to the driver to be written,
so the output lands on the driver's disk whichever cluster computed it, and --resume works the
same for both engines. The staging parts live in ``OUTPUT.shards/staging``: with a remote
cluster that folder must be on storage the workers see (as for any ``ray.data.read_*`` path).

A killed actor is restarted (``max_restarts``) and its unfinished batch retried
(``max_task_retries``); a batch's result reaches the driver only once it completed, so every row
is written exactly once.

Ray is imported here only (``encoderkit[ray]``).
"""
from __future__ import annotations

import itertools
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..core.errors import MissingDependencyError
from .io import Reader, ShardWriter, pyarrow
from .job import Job, Progress, ShardStore, Summary, job_dict, load_runtime, test_hooks
from .tasks import check_arguments, output_schema, process_batch, records_table

DEFAULT_WORKERS = 2


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ModuleNotFoundError:
        raise MissingDependencyError("--engine ray needs Ray Data; pip install 'encoderkit[ray]'") from None
    return ray


class _BatchActor:
    """One Ray actor: loads the runtime once, then runs windows of rows through the task."""

    def __init__(self, job: dict[str, Any], hooks: dict[str, Any], count_tokens: bool):
        self.job = Job(**{**job, "input": Path(job["input"]), "output": Path(job["output"])})
        self.rt = load_runtime(self.job)
        self.delay = float(hooks.get("delay_s", 0))
        self.pid_dir = hooks.get("pid_dir")
        self.calls = 0
        self.count_tokens = count_tokens

    def __call__(self, batch):
        out = process_batch(self.rt, self.job.task, self.job.task_kwargs, batch, count_tokens=self.count_tokens)
        self.calls += 1
        if self.pid_dir:  # test hook: which actor processes (pid -> batches done), to kill one
            Path(self.pid_dir, str(os.getpid())).write_text(str(self.calls))
        if self.delay:
            time.sleep(self.delay)
        return out


def _read_window(batch, items: list[tuple[str, int]]):
    """Ray read step: the staging row groups (one window each) whose indices are in ``batch["id"]``."""
    pa = pyarrow()
    for k in batch["id"]:
        name, group = items[int(k)]
        yield pa.parquet.ParquetFile(name).read_row_group(group)


def _stage(job: Job, reader: Reader, store: ShardStore, done: int) -> tuple[list[Path], list[int]]:
    """Write the records still to do as one Parquet part per shard; returns paths and record counts."""
    pa = pyarrow()
    staging = store.dir / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    records = itertools.islice(reader.records(), done, None)
    schema = records_table([], reader.id_type).schema
    parts, counts = [], []
    index = len(store.shards)
    while True:
        n, w = 0, None
        while n < job.shard_rows:
            window = list(itertools.islice(records, min(job.window, job.shard_rows - n)))
            if not window:
                break
            if w is None:
                w = pa.parquet.ParquetWriter(staging / f"part-{index:05d}.parquet", schema)
            w.write_table(records_table(window, reader.id_type))
            n += len(window)
        if w is None:
            break
        w.close()
        parts.append(staging / f"part-{index:05d}.parquet")
        counts.append(n)
        index += 1
        if n < job.shard_rows:
            break
    return parts, counts


def _reachable(address: str, host: str, port: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``address`` (Ray's own client keeps
    retrying an unreachable GCS for minutes).

    Raises:
        InputError: not HOST:PORT, or the connection is refused / times out.
    """
    import socket

    from ..core.errors import InputError

    if not host or not port.isdigit():
        raise InputError(f"--ray-address {address!r}: expected HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise InputError(f"cannot join the Ray cluster at {address}: nothing answers there "
                         f"({e.strerror or e}); check the address (`ray status` on the head node prints it)") from None


def _init_ray(ray, address: str | None, workers: int) -> bool:
    """Join ``address``, or start a local Ray on 127.0.0.1; returns whether we started it."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        from ..core.errors import InputError

        host, _, port = address.split("://")[-1].rpartition(":")
        if address != "auto":  # "auto": the cluster `ray start` recorded on this machine
            _reachable(address, host, port)
        # a cluster on this machine's loopback: this driver must be on 127.0.0.1 too, not on the
        # machine's outward address, which that cluster does not listen on
        local = {"_node_ip_address": "127.0.0.1"} if host in ("127.0.0.1", "localhost") else {}
        try:
            ray.init(address=address, **local, **quiet)
        except ConnectionError as e:
            if "auth" in repr(e.__cause__).lower() or "token" in str(e.__cause__).lower():
                # Ray >= 2.59 starts clusters with token authentication (RAY_AUTH_MODE=token)
                raise InputError(f"the Ray cluster at {address} refused this client's token: run with "
                                 "RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN, "
                                 "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token") from None
            raise InputError(f"cannot join the Ray cluster at {address}: {e}; check the address "
                             "(`ray status` on the head node prints it)") from None
    else:
        # loopback only, no dashboard: nothing listens beyond this machine. One CPU per actor
        # plus one for the read tasks, so the pool never starves the reads that feed it.
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
                 num_cpus=max(os.cpu_count() or 1, workers + 1), **quiet)
    return True


def run_ray(job: Job, address: str | None = None, workers: int | None = None) -> Summary:
    """Run ``job`` on Ray Data with ``workers`` actors (default 2), through ``run_job`` (which checks
    the job and holds the output lock).

    Args:
        address: a running cluster's address (``ray://host:port`` or ``host:port``); default: a
            local Ray started on 127.0.0.1 and stopped at the end.
    Returns:
        The Summary; the output equals the local engine's (same rows, ids, order).
    Raises:
        InputError: as ``run_local``.
        MissingDependencyError: Ray is not installed.
    """
    from ..core.errors import InputError

    ray = _import_ray()
    workers = DEFAULT_WORKERS if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"--workers must be a positive integer, got {workers!r}")
    reader = Reader(job.input, job.text_column, job.id_column, job.pair_column)
    # join a given cluster before touching the output: a wrong address or a missing token fails
    # here, leaving nothing behind (a local cluster is started later, only if there is work)
    joined = _init_ray(ray, address, workers) if address else False
    try:
        return _run(ray, job, reader, address, workers)
    finally:
        if joined:
            ray.shutdown()


def _run(ray, job: Job, reader: Reader, address: str | None, workers: int) -> Summary:
    store = ShardStore(job, reader)
    done = store.open()
    # the driver checks the arguments and learns the output schema once; the model is then freed
    rt = load_runtime(job)
    check_arguments(rt, job.task, job.task_kwargs)
    store.schema = output_schema(rt, job.task, job.task_kwargs, reader.id_type)
    del rt
    parts, counts = _stage(job, reader, store, done)
    progress = Progress(job, reader, initial=done)
    started = False
    try:
        if parts:
            started = _init_ray(ray, address, workers)  # False when already joined above
            if not job.runtime_options.get("threads") and not address:
                # actors share this machine's cores instead of each taking all of them
                job = Job(**{**job.__dict__, "runtime_options": {
                    **job.runtime_options, "threads": max(1, (os.cpu_count() or 1) // workers)}})
            ctx = ray.data.DataContext.get_current()
            ctx.execution_options.preserve_order = True  # shards are ranges of input records
            ctx.enable_progress_bars = False  # ours counts rows and tokens
            logging.getLogger("ray.data").setLevel(logging.WARNING)
            # one read task per window (a staging row group), so every actor gets work however
            # small the job (ray.data.read_parquet would do, but its file listing races on an
            # optional fsspec import in Ray 2.60 and coalesces small files into one block)
            items = [(str(p), g) for p in parts for g in range(pyarrow().parquet.ParquetFile(p).num_row_groups)]
            ds = ray.data.range(len(items), override_num_blocks=len(items))
            ds = ds.map_batches(_read_window, fn_kwargs={"items": items},
                                batch_size=1, batch_format="numpy", num_cpus=0.5)  # not fused into the actors
            # Ray Data's actor pools restart a dead actor and retry its batch by default
            # (max_restarts=-1, max_task_retries=-1); the kill test in tests/test_batch.py holds it to that
            ds = ds.map_batches(_BatchActor, fn_constructor_kwargs={"job": job_dict(job), "hooks": test_hooks(),
                                                       "count_tokens": progress.enabled},
                                batch_size=job.window, batch_format="pyarrow", num_cpus=1,
                                compute=ray.data.ActorPoolStrategy(size=workers))
            _collect(ds, store, counts, progress)
    finally:
        seconds = progress.close()
        if started:
            ray.shutdown()
    if progress.records != sum(counts):  # never merge a partial result as if it were the whole job
        from ..core.errors import ResourceError

        raise ResourceError(f"the Ray job returned {progress.records} of {sum(counts)} rows; "
                           "the finished shards are kept: rerun with --resume")
    shutil.rmtree(store.dir / "staging", ignore_errors=True)
    rows, rejected = store.finish()
    return Summary(job.task, str(job.output), rows, rejected, done, seconds, progress.records,
                   progress.tokens if progress.enabled else None,
                   engine=f"ray, {workers} workers")


def _collect(ds, store: ShardStore, counts: list[int], progress: Progress) -> None:
    """Cut the ordered result stream back into the shards the staging parts came from."""
    cur, index = 0, len(store.shards)
    writer: ShardWriter | None = None
    rejects: list[dict[str, Any]] = []
    n = tokens = 0
    try:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            offset = 0
            while offset < batch.num_rows:
                piece = batch.slice(offset, counts[cur] - n)
                offset += piece.num_rows
                if writer is None:
                    writer = store.writer(index)
                good, bad = store.split(piece)
                store.stop_if_rejects(bad)
                writer.write(good)
                rejects += bad
                t = sum(x for x in piece.column("tokens").to_pylist() if x)
                n += piece.num_rows
                tokens += t
                progress.update(piece.num_rows, t)
                if n == counts[cur]:
                    store.commit(index, writer, rejects, n, tokens if progress.enabled else None)
                    writer, rejects, n, tokens = None, [], 0, 0
                    cur += 1
                    index += 1
    finally:
        if writer is not None:
            writer.abort()
