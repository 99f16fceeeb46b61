"""The Ray engine on a local cluster (127.0.0.1, 2 workers): same output as the local engine, and
a killed worker actor costs no row and duplicates none.

Both tests run the CLI in a subprocess (each starts and stops its own Ray) and share one xdist
group, so two Ray clusters never run at once on this 2-core machine.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pyarrow  # noqa: E402,F401  (the batch and ray extras are part of `make test`: a failed
import ray  # noqa: E402,F401     import is a failure, never a skip)

from encoderkit import load  # noqa: E402
from encoderkit.batch import Job, run_job  # noqa: E402
from encoderkit.batch.io import read_output  # noqa: E402

from test_batch import ATOL, ENV, make_texts, write_input  # noqa: E402

pytestmark = pytest.mark.xdist_group("ray")


def _loopback_only() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# Ray's own servers bind every interface (it only advertises the --node-ip-address), so where it
# can (root, util-linux, iproute2) the test runs the job in a network namespace that has nothing
# but loopback: that cluster is reachable from 127.0.0.1 only.
LOOPBACK_ONLY = _loopback_only()


def _cli(*args) -> list[str]:
    cmd = [sys.executable, "-m", "encoderkit.cli", *map(str, args)]
    if LOOPBACK_ONLY:
        return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
    return cmd


def test_ray_output_equals_local(tmp_path, tiny_roberta):
    texts = make_texts(300, seed=7)
    texts[40] = ""  # a bad row: both engines reject it the same way
    ids = [f"d{i}" for i in range(300)]
    inp = write_input(tmp_path / "in.jsonl", texts, ids)
    common = dict(input=inp, task="embed", model=str(tiny_roberta), id_column="id", on_error="skip",
                  window=25, shard_rows=100, quiet=True)
    run_job(Job(output=tmp_path / "local.parquet", **common), runtime=load(tiny_roberta, threads=1))
    r = subprocess.run(_cli("embed", tiny_roberta, "--input", inp, "--output", tmp_path / "ray.parquet",
                            "--id-column", "id", "--on-error", "skip", "--window", 25, "--shard-rows", 100,
                            "--engine", "ray", "--workers", 2),
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = r.stderr.strip().splitlines()[-1]
    assert "299 rows" in summary and "(1 rejected)" in summary and "[ray, 2 workers]" in summary
    a, b = read_output(tmp_path / "local.parquet"), read_output(tmp_path / "ray.parquet")
    assert a.schema == b.schema
    assert b.column("id").to_pylist() == [i for i in ids if i != "d40"]
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    np.testing.assert_allclose(np.array(b.column("embedding").to_pylist()),
                               np.array(a.column("embedding").to_pylist()), rtol=0, atol=ATOL)
    assert (tmp_path / "ray.parquet.rejects.jsonl").read_text() == (tmp_path / "local.parquet.rejects.jsonl").read_text()


def test_ray_worker_killed_mid_run(tmp_path, tiny_roberta):
    n = 400
    inp = write_input(tmp_path / "in.txt", make_texts(n, seed=8))
    out = tmp_path / "out.parquet"
    pids = tmp_path / "pids"
    pids.mkdir()
    # test hooks: each actor writes pid -> batches done after every batch, and sleeps 0.25 s per
    # batch so that the job (16 batches of 25 rows) is still running when one is killed
    env = {**ENV, "ENCODERKIT_BATCH_TEST_HOOKS": json.dumps({"pid_dir": str(pids), "delay_s": 0.25})}
    proc = subprocess.Popen(_cli("embed", tiny_roberta, "--input", inp, "--output", out, "--window", 25,
                                 "--shard-rows", 100, "--engine", "ray", "--workers", 2),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.monotonic() + 180
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        for f in pids.iterdir():
            try:
                if int(f.read_text() or 0) >= 2:  # an actor that is well into its share
                    victim = int(f.name)
                    break
            except ValueError:
                pass  # caught mid-write
        time.sleep(0.05)
    if victim is None:
        proc.kill()
        _, err = proc.communicate(timeout=60)
        raise AssertionError(f"no actor got under way before the job ended (exit {proc.returncode}): {err[-3000:]}")
    # the kill lands mid-work: the job is still running and batches remain
    assert proc.poll() is None, "the job ended before the kill"
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.05)  # a write in progress finishes (the others') or never happens (the victim's)
    done_before = {f.name: int(f.read_text() or 0) for f in pids.iterdir()}
    batches = n // 25
    assert sum(done_before.values()) < batches, (done_before, batches)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    ids = read_output(out).column("id").to_pylist()
    assert sorted(ids) == list(range(1, n + 1)) and ids == sorted(ids)  # every row exactly once
    # a replacement actor (a new process) ran batches after the kill: Ray restarted the dead actor
    # and retried its unfinished batch there
    after = {f.name: int(f.read_text() or 0) for f in pids.iterdir()}
    replacements = {pid: k for pid, k in after.items() if pid not in done_before}
    assert replacements and max(replacements.values()) >= 1, (done_before, after)
    assert str(victim) not in replacements and after[str(victim)] == done_before[str(victim)]  # it never ran again
    print(f"killed actor pid {victim} after {done_before[str(victim)]} batches; replacement actors: {replacements}")


_JOIN_SCRIPT = r"""
set -u
ip link set lo up
export HOME="$WORK/home" RAY_AUTH_MODE=token
mkdir -p "$HOME"
ray get-auth-token --generate >/dev/null 2>&1 || exit 90
ray start --head --block --node-ip-address=127.0.0.1 --port="$PORT" --num-cpus=3 --include-dashboard=false \
    --disable-usage-stats --temp-dir="$WORK/ray" >"$WORK/head.log" 2>&1 &
HEAD=$!
for i in $(seq 120); do ray status --address "127.0.0.1:$PORT" >/dev/null 2>&1 && break; sleep 1; done
env -u RAY_AUTH_MODE "$@" >"$WORK/noauth.out" 2>"$WORK/noauth.err"; echo $? >"$WORK/noauth.rc"
ls -A "$OUTDIR" >"$WORK/after-noauth.txt"
"$@" --workers 2 >"$WORK/ok.out" 2>"$WORK/ok.err"; echo $? >"$WORK/ok.rc"
ray status --address "127.0.0.1:$PORT" >"$WORK/status.txt" 2>&1
kill -TERM $HEAD; wait $HEAD || true  # ray start --block exits 1 on SIGTERM after draining
"""


@pytest.mark.skipif(not LOOPBACK_ONLY, reason="needs a loopback-only network namespace (unshare -n as root) "
                                              "so that the cluster listens on 127.0.0.1 only")
def test_ray_joins_an_existing_cluster(tmp_path, tiny_roberta):
    """`ray start --head` (token authentication, Ray's default for local clusters since 2.59), then
    --ray-address: without the token the job fails with one line saying what to set; with it the
    job runs on that cluster (it does not start its own) and equals the local engine."""
    import shutil
    import tempfile

    texts = make_texts(150, seed=9)
    inp = write_input(tmp_path / "in.txt", texts)
    run_job(Job(input=inp, output=tmp_path / "local.parquet", task="embed", model=str(tiny_roberta), window=25,
                shard_rows=50, quiet=True), runtime=load(tiny_roberta, threads=1))
    work = Path(tempfile.mkdtemp(prefix="ekray", dir="/tmp"))  # Ray's socket paths must stay short
    try:
        port = 20000 + os.getpid() % 20000
        cmd = [sys.executable, "-m", "encoderkit.cli", "embed", str(tiny_roberta), "--input", str(inp),
               "--output", str(tmp_path / "ray.parquet"), "--window", "25", "--shard-rows", "50",
               "--engine", "ray", "--ray-address", f"127.0.0.1:{port}"]
        bindir = str(Path(sys.executable).parent)
        env = {**ENV, "WORK": str(work), "PORT": str(port), "OUTDIR": str(tmp_path), "PATH": bindir + os.pathsep + os.environ["PATH"]}
        r = subprocess.run(["unshare", "-n", "bash", "-c", _JOIN_SCRIPT, "join", *cmd], env=env,
                           capture_output=True, text=True, timeout=420)
        log = lambda name: (work / name).read_text() if (work / name).exists() else f"<no {name}>"  # noqa: E731
        assert r.returncode == 0, r.stderr[-2000:] + log("head.log")[-2000:]
        # no token: refused, one line, no traceback, nothing written
        err = log("noauth.err").strip().splitlines()
        assert log("noauth.rc").strip() != "0"
        assert len(err) == 1 and "RAY_AUTH_MODE=token" in err[0] and "Traceback" not in log("noauth.err"), err
        assert "ray.parquet" not in log("after-noauth.txt"), log("after-noauth.txt")  # no output, no shards
        # with the token: the job ran on the cluster that was already there
        assert log("ok.rc").strip() == "0", log("ok.err")[-3000:]
        assert "[ray, 2 workers]" in log("ok.err").strip().splitlines()[-1]
        assert "Active" in log("status.txt") and "3.0 CPU" in log("status.txt"), log("status.txt")
        a, b = read_output(tmp_path / "local.parquet"), read_output(tmp_path / "ray.parquet")
        assert b.column("id").to_pylist() == a.column("id").to_pylist() == list(range(1, len(texts) + 1))
        np.testing.assert_allclose(np.array(b.column("embedding").to_pylist()),
                                   np.array(a.column("embedding").to_pylist()), rtol=0, atol=ATOL)
    finally:
        shutil.rmtree(work, ignore_errors=True)
