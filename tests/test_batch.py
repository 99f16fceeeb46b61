"""Batch jobs over files (local engine): formats, equality with embed(), bad rows, resume after
kill -9, bounded memory. The Ray engine's tests are in test_batch_ray.py."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pyarrow as pa  # the batch extra: part of `make test`, an ImportError here is a failure
import pyarrow.parquet as pq  # noqa: E402

from encoderkit import load  # noqa: E402
from encoderkit.batch import Job, run_job  # noqa: E402
from encoderkit.batch.io import read_output  # noqa: E402
from encoderkit.cli import main  # noqa: E402
from encoderkit.core.errors import InputError  # noqa: E402
from encoderkit.core.texts import corpus_lines  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ATOL = 1e-6  # batches differ from one embed() call (other padding partners): float noise only


def make_texts(n: int, seed: int = 0) -> list[str]:
    """Mixed lengths (10..300 characters) from the packaged corpus."""
    lines, rnd = corpus_lines(), random.Random(seed)
    return [lines[i % len(lines)][: rnd.randint(10, 300)].strip() or "x" for i in range(n)]


def write_input(path: Path, texts: list[str], ids: list | None = None) -> Path:
    """Write texts as .txt/.jsonl/.csv/.parquet (with an ``id`` column when ``ids``)."""
    rows = [{"text": t, **({"id": ids[i]} if ids else {})} for i, t in enumerate(texts)]
    if path.suffix == ".txt":
        path.write_text("".join(t + "\n" for t in texts))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(scope="module")
def rt(tiny_roberta):
    return load(tiny_roberta, threads=1)


@pytest.fixture(scope="module")
def texts():
    return make_texts(100)


def job(tmp_path, model, inp, out, **kw) -> Job:
    kw.setdefault("quiet", True)
    return Job(input=inp, output=tmp_path / out, task=kw.pop("task", "embed"), model=str(model), **kw)


# --------------------------------------------------------------------------- equality with embed()

# input format -> (id column values or None, the ids the output must carry)
CASES = {
    ".txt": (None, lambda n: list(range(1, n + 1))),  # line numbers
    ".jsonl": ("str", lambda n: [f"doc-{i}" for i in range(n)]),
    ".csv": (None, lambda n: list(range(2, n + 2))),  # line numbers; line 1 is the header
    ".parquet": ("int", lambda n: [1000 + 7 * i for i in range(n)]),  # typed ids keep their type
}


@pytest.mark.parametrize("out_fmt", [".parquet", ".jsonl"])
@pytest.mark.parametrize("in_fmt", list(CASES))
def test_output_equals_embed(tmp_path, tiny_roberta, rt, texts, in_fmt, out_fmt):
    id_kind, expected_ids = CASES[in_fmt]
    ids = expected_ids(len(texts)) if id_kind else None
    inp = write_input(tmp_path / f"in{in_fmt}", texts, ids)
    # windows of 16 and shards of 40: several shards, windows cut by shard ends
    s = run_job(job(tmp_path, tiny_roberta, inp, f"out{out_fmt}", id_column="id" if id_kind else None,
                    window=16, shard_rows=40), runtime=rt)
    assert (s.rows, s.rejected) == (100, 0)
    table = read_output(tmp_path / f"out{out_fmt}")
    assert table.column_names == ["id", "embedding"]
    assert table.column("id").to_pylist() == expected_ids(len(texts))
    got = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    want = rt.embed(texts)
    assert got.shape == want.shape == (100, rt.spec.hidden_size)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    assert not (tmp_path / f"out{out_fmt}.shards").exists()  # merged and cleaned up


def test_fill_mask_output_equals_fill_mask(tmp_path, tiny_roberta, rt):
    texts = [f"{t[:60]} <mask> and more." for t in make_texts(30, seed=3)]
    inp = write_input(tmp_path / "in.jsonl", texts)
    run_job(job(tmp_path, tiny_roberta, inp, "out.parquet", task="fill-mask",
                task_kwargs={"top_k": 3}, window=8, shard_rows=20), runtime=rt)
    got = read_output(tmp_path / "out.parquet").column("predictions").to_pylist()
    want = rt.fill_mask(texts, top_k=3)
    assert len(got) == len(want) == 30
    for g, w in zip(got, want):
        assert [[p["token"] for p in m] for m in g] == [[p["token"] for p in m] for m in w]
        np.testing.assert_allclose([p["score"] for m in g for p in m], [p["score"] for m in w for p in m],
                                   rtol=0, atol=ATOL)


def test_cli_input_output(tmp_path, tiny_roberta, rt, texts, capfd):
    inp = write_input(tmp_path / "in.txt", texts[:20])
    out = tmp_path / "out.jsonl"
    assert main(["embed", str(tiny_roberta), "--input", str(inp), "--output", str(out), "--threads", "1",
                 "--normalize"]) == 0
    summary = capfd.readouterr().err.strip().splitlines()[-1]
    assert summary.startswith(f"embed: 20 rows -> {out} (0 rejected); 20 records in ")
    assert "rows/s [local]" in summary  # no tokens/s: stderr is no TTY, so no bar counts them
    got = np.array([r["embedding"] for r in map(json.loads, out.read_text().splitlines())], dtype=np.float32)
    np.testing.assert_allclose(got, rt.embed(texts[:20], normalize=True), rtol=0, atol=ATOL)
    # both TEXT and --input, or neither: exit 2 with one line
    assert main(["embed", str(tiny_roberta), "hello", "--input", str(inp), "--output", str(out)]) == 2
    assert main(["embed", str(tiny_roberta)]) == 2
    assert main(["fill-mask", str(tiny_roberta), "--input", str(inp)]) == 2  # no --output
    err = capfd.readouterr().err
    assert "not both" in err and "needs --output" in err
    # the output exists: refused without --force; --quiet prints nothing
    assert main(["embed", str(tiny_roberta), "--input", str(inp), "--output", str(out)]) == 2
    assert "already exists" in capfd.readouterr().err
    assert main(["embed", str(tiny_roberta), "--input", str(inp), "--output", str(out), "--force", "--quiet"]) == 0
    assert capfd.readouterr().err == ""


# --------------------------------------------------------------------------- bad rows, one test each

def _bad_row_case(tmp_path, tiny_roberta, rt, inp: Path, line: int, reason: str, **kw):
    """Stop names file:line and writes no output; skip writes the rest and the reject."""
    with pytest.raises(InputError) as e:
        run_job(job(tmp_path, tiny_roberta, inp, "stop.parquet", window=4, shard_rows=8, **kw), runtime=rt)
    assert f"{inp}:{line}: " in str(e.value) and reason in str(e.value)
    assert not (tmp_path / "stop.parquet").exists()
    if line <= 8:  # the bad row is in the first shard: nothing to resume is left behind
        assert not (tmp_path / "stop.parquet.shards").exists()
    else:  # finished shards are kept, and the run continues from them with --on-error skip
        assert "1 finished shard(s) kept: rerun with --resume --on-error skip" in str(e.value)
        s = run_job(job(tmp_path, tiny_roberta, inp, "stop.parquet", window=4, shard_rows=8, resume=True,
                        on_error="skip", **kw), runtime=rt)
        assert (s.resumed_records, s.rejected, s.rows) == (8, 1, 19)
    s = run_job(job(tmp_path, tiny_roberta, inp, "skip.parquet", on_error="skip", window=4, shard_rows=8, **kw),
                runtime=rt)
    rejects = [json.loads(x) for x in (tmp_path / "skip.parquet.rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [line] and reason in rejects[0]["reason"]
    assert s.rejected == 1 and s.rows == 19
    ids = read_output(tmp_path / "skip.parquet").column("id").to_pylist()
    assert len(ids) == 19 and line not in ids and len(set(ids)) == 19
    return rejects[0]


def test_bad_row_empty_text(tmp_path, tiny_roberta, rt):
    texts = make_texts(20)
    texts[6] = "   "
    _bad_row_case(tmp_path, tiny_roberta, rt, write_input(tmp_path / "in.txt", texts), 7, "empty text")


def test_bad_row_missing_column(tmp_path, tiny_roberta, rt):
    lines = [json.dumps({"text": t}) for t in make_texts(20)]
    lines[11] = json.dumps({"body": "the text is under another name"})
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    _bad_row_case(tmp_path, tiny_roberta, rt, inp, 12, "no 'text' field")


def test_bad_row_malformed_json(tmp_path, tiny_roberta, rt):
    lines = [json.dumps({"text": t}) for t in make_texts(20)]
    lines[2] = '{"text": "an unterminated string}'
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    r = _bad_row_case(tmp_path, tiny_roberta, rt, inp, 3, "malformed JSON")
    assert r["id"] == 3 and r["text"] == lines[2]  # the raw line, to find and fix it


def test_bad_row_too_long(tmp_path, tiny_roberta, rt):
    texts = make_texts(20)
    texts[15] = " ".join(["word"] * 400)  # far over the tiny model's 128 positions
    inp = write_input(tmp_path / "in.csv", texts)
    _bad_row_case(tmp_path, tiny_roberta, rt, inp, 17, "more than the model's")  # header is line 1
    # with --truncate it is no bad row: embedded from its first tokens, as embed(truncate=True)
    run_job(job(tmp_path, tiny_roberta, inp, "trunc.parquet", task_kwargs={"truncate": True}), runtime=rt)
    got = np.array(read_output(tmp_path / "trunc.parquet").column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(got, rt.embed(texts, truncate=True), rtol=0, atol=ATOL)


def test_bad_argument_stops_before_any_row(tmp_path, tiny_roberta, rt, texts):
    inp = write_input(tmp_path / "in.txt", texts)
    with pytest.raises(InputError, match="layer must be in"):
        run_job(job(tmp_path, tiny_roberta, inp, "o.parquet", task_kwargs={"layer": 99}, on_error="skip"),
                runtime=rt)
    assert not (tmp_path / "o.parquet.rejects.jsonl").exists()


# --------------------------------------------------------------------------- resume

def _digest(p: Path) -> tuple[int, str]:
    return p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "encoderkit.cli", *map(str, args)]


def test_kill_9_then_resume(tmp_path, tiny_roberta, rt):
    n = 1200
    texts = make_texts(n, seed=5)
    inp = write_input(tmp_path / "in.txt", texts)
    out = tmp_path / "out.parquet"
    ledger = Path(str(out) + ".shards") / "ledger.json"
    base = ["embed", tiny_roberta, "--input", inp, "--output", out, "--threads", "1", "--quiet",
            "--window", 50, "--shard-rows", 100]
    # 0.1 s per window (a test hook) keeps the run going long enough to be killed mid-way
    env = {**ENV, "ENCODERKIT_BATCH_TEST_HOOKS": json.dumps({"delay_s": 0.1})}
    proc = subprocess.Popen(_cli(*base), env=env)
    finished: list[dict] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            finished = json.loads(ledger.read_text())["shards"]
        except (OSError, ValueError):
            finished = []
        if len(finished) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    finished = json.loads(ledger.read_text())["shards"]  # what the ledger says at the kill
    assert 2 <= len(finished) < n // 100
    before = {s["file"]: _digest(ledger.parent / s["file"]) for s in finished}
    r = subprocess.run(_cli(*base, "--resume", "--keep-shards"), env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    after = {f: _digest(ledger.parent / f) for f in before}
    assert after == before  # the shards finished before the kill were not recomputed
    done = json.loads(ledger.read_text())
    assert done["complete"] and len(done["shards"]) == n // 100
    table = read_output(out)
    assert table.column("id").to_pylist() == list(range(1, n + 1))  # every row once, in order
    np.testing.assert_allclose(np.array(table.column("embedding").to_pylist(), dtype=np.float32),
                               rt.embed(texts), rtol=0, atol=ATOL)


def test_second_job_on_the_same_output_is_refused(tmp_path, tiny_roberta, rt, texts):
    """Two jobs writing one --output would interleave shards and ledgers: the second one fails at
    once naming the first one's pid, and the first one's output is complete and right."""
    inp = write_input(tmp_path / "in.txt", texts)
    out = tmp_path / "out.parquet"
    ledger = Path(str(out) + ".shards") / "ledger.json"
    env = {**ENV, "ENCODERKIT_BATCH_TEST_HOOKS": json.dumps({"delay_s": 0.2})}
    proc = subprocess.Popen(_cli("embed", tiny_roberta, "--input", inp, "--output", out, "--threads", "1",
                                 "--quiet", "--window", 10, "--shard-rows", 20), env=env)
    try:
        deadline = time.monotonic() + 120
        while not ledger.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the first job ended before the second one started"
        for kw in ({}, {"resume": True}, {"force": True}):  # not even --force takes it over
            with pytest.raises(InputError, match=rf"being written by another encoderkit process \(pid {proc.pid}\)"
                                                 r".*choose another --output"):
                run_job(job(tmp_path, tiny_roberta, inp, "out.parquet", **kw), runtime=rt)
        r = subprocess.run(_cli("embed", tiny_roberta, "--input", inp, "--output", out, "--quiet"), env=ENV,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "being written by another encoderkit process" in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        assert proc.wait(timeout=300) == 0
    table = read_output(out)
    assert table.column("id").to_pylist() == list(range(1, len(texts) + 1))
    np.testing.assert_allclose(np.array(table.column("embedding").to_pylist(), dtype=np.float32),
                               rt.embed(texts), rtol=0, atol=ATOL)
    assert not list(tmp_path.glob(".*.lock"))  # released when the job ended


def test_unreachable_ray_address_fails_at_once(tmp_path, tiny_roberta, texts):
    """A wrong --ray-address is one line within seconds (Ray's client alone retries for minutes),
    and nothing is written."""
    import ray  # noqa: F401  (the ray extra is part of `make test`)
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inp = write_input(tmp_path / "in.txt", texts)
    t = time.monotonic()
    r = subprocess.run(_cli("embed", tiny_roberta, "--input", inp, "--output", tmp_path / "o.parquet",
                            "--engine", "ray", "--ray-address", f"127.0.0.1:{port}"),
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(
        f"error: cannot join the Ray cluster at 127.0.0.1:{port}: nothing answers there"), r.stderr[-2000:]
    assert "Traceback" not in r.stderr and time.monotonic() - t < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]
    r = subprocess.run(_cli("embed", tiny_roberta, "--input", inp, "--output", tmp_path / "o.parquet",
                            "--engine", "ray", "--ray-address", "no-port-here"), env=ENV, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "expected HOST:PORT" in r.stderr, r.stderr[-2000:]


def test_resume_refuses_another_job(tmp_path, tiny_roberta, rt, texts):
    inp = write_input(tmp_path / "in.txt", texts)
    shards = tmp_path / "o.parquet.shards"
    shards.mkdir()
    (shards / "ledger.json").write_text(json.dumps({"job": {"task": "fill-mask"}, "shards": []}))
    with pytest.raises(InputError, match="holds an unfinished run; pass --resume"):
        run_job(job(tmp_path, tiny_roberta, inp, "o.parquet"), runtime=rt)
    with pytest.raises(InputError, match="written by a different job"):
        run_job(job(tmp_path, tiny_roberta, inp, "o.parquet", resume=True), runtime=rt)


def test_resume_recomputes_a_corrupted_shard(tmp_path, tiny_roberta, rt, texts):
    inp = write_input(tmp_path / "in.txt", texts)
    kw = dict(window=10, shard_rows=25, keep_shards=True)
    run_job(job(tmp_path, tiny_roberta, inp, "o.jsonl", **kw), runtime=rt)
    shards = tmp_path / "o.jsonl.shards"
    (tmp_path / "o.jsonl").unlink()  # as if the merge had not landed
    ledger = json.loads((shards / "ledger.json").read_text())
    ledger["complete"] = False
    (shards / "ledger.json").write_text(json.dumps(ledger))
    (shards / "part-00002.jsonl").write_text("garbage\n")
    s = run_job(job(tmp_path, tiny_roberta, inp, "o.jsonl", resume=True, **kw), runtime=rt)
    assert s.resumed_records == 50 and s.records_this_run == 50  # shards 0, 1 kept; 2, 3 redone
    ids = [json.loads(x)["id"] for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert ids == list(range(1, 101))


# --------------------------------------------------------------------------- memory

_MEM = """
import random, resource, sys
from pathlib import Path
n, d, model = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
from encoderkit.core.texts import corpus_lines
lines, rnd = corpus_lines(), random.Random(0)
with open(d / "in.txt", "w") as f:
    for i in range(n):
        f.write(lines[i % len(lines)][: rnd.randint(10, 200)] + "\\n")
from encoderkit.cli import main
rc = main(["embed", model, "--input", str(d / "in.txt"), "--output", str(d / "out.parquet"),
           "--quiet", "--threads", "1"])
print(rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


def _peak_rss_mb(tmp_path, model, n: int) -> float:
    d = tmp_path / str(n)
    d.mkdir()
    r = subprocess.run([sys.executable, "-c", _MEM, str(n), str(d), str(model)], env=ENV, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    rc, kib = r.stdout.split()
    assert rc == "0"
    assert pq.ParquetFile(d / "out.parquet").metadata.num_rows == n
    return int(kib) / 1024


def _memory_case(tmp_path, model, small: int, large: int):
    a, b = _peak_rss_mb(tmp_path, model, small), _peak_rss_mb(tmp_path, model, large)
    print(f"peak RSS: {small} rows {a:.0f} MB, {large} rows {b:.0f} MB, difference {b - a:+.0f} MB")
    assert abs(b - a) < 100


def test_memory_bounded_20k_vs_60k(tmp_path, tiny_roberta):
    _memory_case(tmp_path, tiny_roberta, 20_000, 60_000)


@pytest.mark.slow  # 1.5 to 2.7 min here depending on the machine's load (the 200k run alone 70 s+)
def test_memory_bounded_20k_vs_200k(tmp_path, tiny_roberta):
    _memory_case(tmp_path, tiny_roberta, 20_000, 200_000)
