"""`make bench`: benchmark random-weight roberta-large on every backend against the peers, then
the real all-MiniLM-L6-v2 (embed) against its peers, and regenerate the README's performance
tables (and the MiniLM similarity table) from the results.

Beside the default conversion (token int8, padding removed), an ONNX conversion with
``--int8-mode static`` runs as the variant ``onnx-int8 [static]`` and one with ``--no-pack`` as
``onnx [padded]`` / ``onnx-int8 [padded]`` (the graphs before padding removal, side by side);
torch-bf16 runs where the CPU has bf16. The load average is
read before and after and printed in each table's header: figures from a loaded machine say so.

    python -m benchmarks.make_bench [--repeats N] [--readme-only] [--skip-minilm] [--verbose]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out" / "roberta-large"
OUT_MINILM = ROOT / "bench-out" / "minilm"
README = ROOT / "README.md"


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> block")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def perf_block(report: dict, what: str = "random-weight roberta-large") -> str:
    from encoderkit.bench import render_markdown

    md = render_markdown(report)
    md = md.split("\n", 2)[2]  # drop the title
    load = report.get("load_average")
    load = (f" Load average (1/5/15 min) before: {load['before']}, after: {load['after']}." if load else "")
    return (f"Measured by `make bench` ({report['repeats']} interleaved repeats) on "
            f"{report['machine']['cpu']}, {report['machine']['cores']} cores; {what}.{load}\n\n"
            + md.replace("\n## ", "\n#### "))


def _bench(out: Path, model: Path, tasks: list[str], repeats: int, optimum, variants: dict,
           no_optimum: str | None = None) -> None:
    from encoderkit.bench import OPTIMUM_SYSTEMS, run_bench

    before = _load()
    run_bench(model, backends=None, tasks=tasks, out=out, repeats=repeats,
              optimum_python=None if no_optimum else optimum, variants=variants)
    report = json.loads((out / "bench.json").read_text())
    report["load_average"] = {"before": before, "after": _load()}
    if no_optimum and optimum:  # the venv exists: say why it did not run here
        report["skipped"] |= {name: no_optimum for name in OPTIMUM_SYSTEMS}
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")


def _onnx_only(model, out: Path, **options) -> Path:
    """An ONNX-only conversion with int8 and ``options``, cached like the demo's conversions."""
    from encoderkit.conversion import convert

    if not (out / "manifest.json").is_file():
        convert(model, ["safetensors", "onnx"], out, force=out.exists(), quantize="int8", **options)
    return out


def _variants(model, name: str) -> dict[str, tuple[Path, str]]:
    from encoderkit.demo import OUT as DEMO

    static = _onnx_only(model, DEMO / f"{name}-static", int8_mode="static")
    padded = _onnx_only(model, DEMO / f"{name}-padded", pack=False)
    return {"onnx-int8 [static]": (static, "onnx-int8"), "onnx [padded]": (padded, "onnx"),
            "onnx-int8 [padded]": (padded, "onnx-int8")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--readme-only", action="store_true", help="only rewrite README from the last bench.json")
    p.add_argument("--skip-minilm", action="store_true", help="only roberta-large")
    p.add_argument("--verbose", action="store_true", help="show third-party output (exporter, TensorFlow logs)")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from encoderkit.core import progress
    from encoderkit.core.logs import captured

    # as the CLI does: exporter/TensorFlow/absl chatter and warnings into a log file, our lines and
    # progress to the terminal (encoderkit.demo's conversion lines are print()s: sys.stdout too)
    with captured(verbose=a.verbose) as io:
        progress.configure(stream=io.err)
        stdout, sys.stdout = sys.stdout, io.out
        try:
            return _main(a)
        except BaseException:
            io.show_tail()
            raise
        finally:
            sys.stdout = stdout
            progress.reset()


def _main(a: argparse.Namespace) -> int:
    from encoderkit.demo import OUT as DEMO, _converted
    from encoderkit.storage.random_init import init_random
    from encoderkit.backends.loading import available_backends
    from encoderkit.demo.similarity import similarity_table

    mini = None
    if not a.readme_only:
        print(f"load average before: {_load()} ({os.cpu_count()} cores)")
        ckpt = DEMO / "roberta-large-random"
        if not (ckpt / "manifest.json").is_file():
            init_random(ckpt, "large", seed=0, force=ckpt.exists())
        conv = _converted(ckpt, DEMO / "roberta-large-converted")
        # optimum's recipe as a peer where `make optimum-venv` made its venv (else listed as skipped)
        optimum = os.environ.get("ENCODERKIT_OPTIMUM_PYTHON") or \
            next((str(p) for p in [ROOT / ".venv-optimum" / "bin" / "python"] if p.is_file()), None)
        # optimum's export of roberta-large runs in a second process (~5.6 GB) beside the ~18 GB
        # this one holds with every system loaded: on a machine under 32 GB it ran out of memory
        ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        no_opt = (f"not run on roberta-large: this machine's {ram_gb:.0f} GB of memory cannot hold its export "
                  "beside every other system (measured on MiniLM below)") if ram_gb < 32 else None
        _bench(OUT, conv, ["fill-mask", "embed"], a.repeats, optimum, _variants(ckpt, "roberta-large"), no_opt)
        if not a.skip_minilm:
            mini = _converted("minilm", DEMO / "minilm-converted")
            _bench(OUT_MINILM, mini, ["embed"], max(a.repeats, 3), optimum, _variants("minilm", "minilm"))
    report = json.loads((OUT / "bench.json").read_text())
    text = replace_block(README.read_text(), "bench", perf_block(report))
    if (OUT_MINILM / "bench.json").is_file():
        text = replace_block(text, "bench-minilm", perf_block(json.loads((OUT_MINILM / "bench.json").read_text()),
                                                              "the real all-MiniLM-L6-v2, embed"))
    mini = mini or _converted("minilm", DEMO / "minilm-converted")
    text = replace_block(text, "similarity", similarity_table(mini, available_backends(mini)))
    README.write_text(text)
    print(f"README.md updated from {OUT / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
