"""The local streaming engine: read a window, run the task, append to the current shard.

Memory holds one window of texts and results (plus the runtime), whatever the corpus size: the
reader streams, a shard is written row group by row group into its temp file, and the final
merge copies one row group at a time.
"""
from __future__ import annotations

import itertools
import time
from typing import Any

from .io import Reader
from .job import Job, Progress, ShardStore, Summary, load_runtime, test_hooks
from .tasks import check_arguments, output_schema, process_batch, records_table


def run_local(job: Job, runtime: Any = None) -> Summary:
    """Run ``job`` in this process (through ``run_job``, which checks the job and holds the output lock).

    Args:
        runtime: an already loaded Runtime (tests, notebooks); default ``encoderkit.load(job.model, ...)``.
    Returns:
        The Summary (also what the CLI prints as its last line).
    Raises:
        InputError: bad arguments or, with on_error "stop", the first bad row (file and line).
    """
    reader = Reader(job.input, job.text_column, job.id_column, job.pair_column)
    store = ShardStore(job, reader)
    done = store.open()
    rt = runtime if runtime is not None else load_runtime(job)
    check_arguments(rt, job.task, job.task_kwargs)
    store.schema = output_schema(rt, job.task, job.task_kwargs, reader.id_type)
    delay = float(test_hooks().get("delay_s", 0))
    progress = Progress(job, reader, initial=done)
    records = itertools.islice(reader.records(), done, None)  # a resumed run skips finished shards
    index = len(store.shards)
    try:
        while True:
            writer, rejects, n, tokens = None, [], 0, 0
            while n < job.shard_rows:
                window = list(itertools.islice(records, min(job.window, job.shard_rows - n)))
                if not window:
                    break
                if writer is None:
                    writer = store.writer(index)
                out = process_batch(rt, job.task, job.task_kwargs, records_table(window, reader.id_type),
                                    count_tokens=progress.enabled)
                good, bad = store.split(out)
                try:
                    store.stop_if_rejects(bad)
                except BaseException:
                    writer.abort()
                    raise
                writer.write(good)
                rejects += bad
                t = sum(x for x in out.column("tokens").to_pylist() if x)
                n += len(window)
                tokens += t
                progress.update(len(window), t)
                if delay:
                    time.sleep(delay)
            if writer is None:
                break
            store.commit(index, writer, rejects, n, tokens if progress.enabled else None)
            index += 1
            if n < job.shard_rows:
                break
    finally:
        seconds = progress.close()
    rows, rejected = store.finish()
    return Summary(job.task, str(job.output), rows, rejected, done, seconds, progress.records,
                   progress.tokens if progress.enabled else None)
