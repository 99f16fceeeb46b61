"""`make bench`: benchmark random-weight roberta-large on every backend against the peers, and
regenerate the README's performance table (and the MiniLM similarity table) from the results.

    python -m benchmarks.make_bench [--repeats N] [--readme-only]
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
README = ROOT / "README.md"


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> block")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def perf_block(report: dict) -> str:
    from encoderkit.bench import render_markdown

    md = render_markdown(report)
    md = md.split("\n", 2)[2]  # drop the title
    return (f"Measured by `make bench` ({report['repeats']} interleaved repeats) on "
            f"{report['machine']['cpu']}, {report['machine']['cores']} cores; random-weight roberta-large.\n\n"
            + md.replace("\n## ", "\n#### "))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--readme-only", action="store_true", help="only rewrite README from the last bench.json")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from encoderkit.demo import OUT as DEMO, _converted
    from encoderkit.storage.random_init import init_random
    from encoderkit.backends.loading import available_backends
    from encoderkit.demo.similarity import similarity_table

    if not a.readme_only:
        from encoderkit.bench import run_bench

        ckpt = DEMO / "roberta-large-random"
        if not (ckpt / "manifest.json").is_file():
            init_random(ckpt, "large", seed=0, force=ckpt.exists())
        conv = _converted(ckpt, DEMO / "roberta-large-converted")
        # optimum's recipe as a peer where `make optimum-venv` made its venv (else listed as skipped)
        optimum = os.environ.get("ENCODERKIT_OPTIMUM_PYTHON") or \
            next((str(p) for p in [ROOT / ".venv-optimum" / "bin" / "python"] if p.is_file()), None)
        run_bench(conv, backends=None, tasks=["fill-mask", "embed"], out=OUT, repeats=a.repeats,
                  optimum_python=optimum)
    report = json.loads((OUT / "bench.json").read_text())
    text = replace_block(README.read_text(), "bench", perf_block(report))
    mini = _converted("minilm", DEMO / "minilm-converted")
    text = replace_block(text, "similarity", similarity_table(mini, available_backends(mini)))
    README.write_text(text)
    print(f"README.md updated from {OUT / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
