"""Batch engines against in-memory ``embed()`` on the same documents (a benchmark, not a test).

For each backend: in-memory ``rt.embed(texts)`` and the local engine (file in -> shards -> merged
Parquet, same loaded runtime) in interleaved repeats, best of each; then the Ray engine with 1 and
2 workers (each a fresh local cluster: start, actor model loads and staging included).

    python -m benchmarks.batch_throughput CONVERT_DIR [--backends onnx,onnx-int8] [--docs 2000]
(CONVERT_DIR from `encoderkit convert CKPT --to onnx --quantize int8 --out CONVERT_DIR`)
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path


def make_docs(n: int, seed: int = 0) -> list[str]:
    """``n`` documents of mixed lengths (4 to ~300 words) stitched from the packaged corpus."""
    from encoderkit.core.texts import corpus_lines

    words = " ".join(corpus_lines()).split()
    rnd = random.Random(seed)
    docs = []
    for _ in range(n):
        k = min(int(rnd.lognormvariate(3.5, 0.9)) + 4, 300)  # median ~37 words, a long tail
        start = rnd.randrange(len(words) - k)
        docs.append(" ".join(words[start:start + k]))
    return docs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model", type=Path)
    p.add_argument("--backends", default="onnx,onnx-int8")
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ray-workers", default="1,2", help="comma list; empty to skip Ray")
    p.add_argument("--out", type=Path, default=Path("bench-out/batch_throughput.json"))
    a = p.parse_args(argv)

    import encoderkit
    from encoderkit.batch import Job, run_job

    docs = make_docs(a.docs)
    tmp = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    inp = tmp / "docs.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(docs)))
    results = {"model": str(a.model), "docs": a.docs, "threads": a.threads, "backends": {}}
    for backend in [b for b in a.backends.split(",") if b]:
        rt = encoderkit.load(a.model, backend, threads=a.threads)
        tokens = sum(len(x) for x in rt.tokenizer.encode(docs, truncate=True))
        rt.embed(docs[:64], truncate=True)  # warm-up
        job = Job(input=inp, output=tmp / f"out-{backend}.parquet", task="embed", model=str(a.model),
                  backend=backend, task_kwargs={"truncate": True}, id_column="id", force=True, quiet=True,
                  runtime_options={"threads": a.threads})
        mem, local, mem_cpu, local_cpu = [], [], [], []
        for _ in range(a.repeats):  # interleaved, so machine load drifts hit both alike
            t, c = time.perf_counter(), time.process_time()
            rt.embed(docs, truncate=True)
            mem.append(time.perf_counter() - t)
            mem_cpu.append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            run_job(job, runtime=rt)
            local.append(time.perf_counter() - t)
            local_cpu.append(time.process_time() - c)
        # CPU seconds as well as wall: on a shared machine the wall clock also measures the neighbours
        r = {"tokens": tokens, "in_memory_s": min(mem), "local_s": min(local), "all_in_memory_s": mem,
             "all_local_s": local, "local_over_in_memory": min(local) / min(mem),
             "in_memory_cpu_s": min(mem_cpu), "local_cpu_s": min(local_cpu),
             "local_over_in_memory_cpu": min(local_cpu) / min(mem_cpu)}
        del rt
        for w in [int(x) for x in a.ray_workers.split(",") if x]:
            rjob = Job(**{**job.__dict__, "output": tmp / f"ray-{backend}-{w}.parquet",
                          "runtime_options": {}})  # actors split the cores between them
            t = time.perf_counter()
            s = run_job(rjob, "ray", workers=w)
            r[f"ray_{w}_s"] = time.perf_counter() - t
            r[f"ray_{w}_rows"] = s.rows
        results["backends"][backend] = r
        line = (f"{backend:<10} {a.docs} docs {tokens} tokens | in-memory embed {r['in_memory_s']:.2f} s "
                f"({a.docs / r['in_memory_s']:.0f} docs/s) | local engine {r['local_s']:.2f} s "
                f"({r['local_over_in_memory']:.3f}x wall, {r['local_over_in_memory_cpu']:.3f}x CPU s)")
        for w in [int(x) for x in a.ray_workers.split(",") if x]:
            line += f" | ray {w} worker(s) {r[f'ray_{w}_s']:.1f} s ({r[f'ray_{w}_s'] / r['in_memory_s']:.2f}x)"
        print(line, flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
