"""Batch inference over files: streaming in, numbered resumable shards out, local or on Ray.

``run_job(job)`` picks the engine; ``encoderkit.batch.cli`` adds ``--input/--output`` to the
task commands. Ray is imported only by ``ray_engine``; pyarrow only when a job runs.
"""
from __future__ import annotations

from .job import Job, Summary
from ..tasks import TASKS

ENGINES = ("local", "ray")


def run_job(job: Job, engine: str = "local", *, ray_address: str | None = None, workers: int | None = None,
            runtime=None) -> Summary:
    """Run a batch job on ``engine`` ("local" or "ray"); see ``Job`` for the fields.

    Raises:
        InputError: bad arguments, or a bad row with on_error "stop".
        MissingDependencyError: pyarrow (or Ray for the ray engine) not installed.
    """
    from pathlib import Path

    from ..core.errors import InputError
    from ..storage.files import target_lock

    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    job.check()
    output = Path(job.output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--output {output}: cannot create its folder ({e.strerror}); choose another path") from None
    # One job per output: a second job on the same --output (or its shards) fails at once, naming
    # the pid that holds it, instead of interleaving shards and ledgers.
    with target_lock(output, flag="--output"):
        if engine == "local":
            from .local import run_local

            return run_local(job, runtime=runtime)
        from .ray_engine import run_ray

        return run_ray(job, address=ray_address, workers=workers)


__all__ = ["ENGINES", "Job", "Summary", "TASKS", "run_job"]
