"""`encoderkit bench`: every backend against the tools people use today, side by side.

All systems run in ONE process, interleaved repeat by repeat, so machine drift hits all alike;
ratios are only ever taken between figures of the same run. ``systems``: our backends; ``peers``:
what users pick instead (one function each; a peer that cannot run here is listed under "skipped"
with the reason, never silently absent); ``run``: workloads, timing, latency; ``report``:
accuracy against the reference of the same run, the gate, targets, bench.md and plots.
An application: imports the layers below it, never another application or the CLI.
"""
from __future__ import annotations

from ..core.texts import read_workload
from .peers import CT2_DIRECT, OPTIMUM_ENV, OPTIMUM_SCRIPT, OPTIMUM_SYSTEMS, PEERS, ct2_direct_systems
from .report import accuracy, best_int8, machine, passes_gate, ratios, render_markdown, target_rows
from .run import fit_workload, gemm_peak_gflops, model_flops, run_bench
from .systems import System

__all__ = ["CT2_DIRECT", "OPTIMUM_ENV", "OPTIMUM_SCRIPT", "OPTIMUM_SYSTEMS", "PEERS", "System", "accuracy",
           "best_int8", "ct2_direct_systems", "fit_workload", "gemm_peak_gflops", "machine", "model_flops",
           "passes_gate", "ratios", "read_workload", "render_markdown", "run_bench", "target_rows"]
