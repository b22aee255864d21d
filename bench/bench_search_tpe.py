"""Search efficiency: the trials Optuna needs to find the best setup, and a full search's wall time.

The space: Llama-3.1-70B on three GPU types (H100, A100, B200 nodes of 8) with up to 32 GPUs (1-4 nodes),
512 clients (ISL 2048, OSL 256) under a 50 ms TPOT SLO; the search picks the profile, TP, PP, replicas,
max_num_seqs per replica and the weight / KV-cache dtype (fp8 where the GPU has FP8 tensor cores).
Every configuration is scored first (the exhaustive optimum); then a seeded search per seed runs on a
real SQLite study until its trials first evaluate the optimum (capped at half the space). A trial is a
setup (everything but max_num_seqs, which each trial solves exactly: search/batch.py); the optimum is
the setup whose solved max_num_seqs ranks first, every setup solved without a study. Reported:
the median over 5 seeds, as a fraction of the space, beside what uniform sampling without replacement
needs on average ((N + 1) / (k + 1) draws to hit one of k optima among N).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tpplan import search as search_stage
from tpplan.api.search import prepare
from tpplan.search import better, config_of
from tpplan.search import study as study_mod

QUESTION = {
    "gpus": 32,
    "concurrency": 512,
    "slo_tpot_ms": 50.0,
    "dtypes": ["bf16", "fp8"],
    "kv_cache_dtypes": ["auto", "fp8"],
}
MODEL, PROFILES, ISL, OSL = "llama-3.1-70b", ["dgx-h100", "dgx-a100-80g", "hgx-b200"], 2048, 256
SEEDS = 5


def trials_to_optimum(
    prep: search_stage.Prepared, optimum: set[str], seed: int, cap: int, db: Path
) -> int | None:
    """Trials of one seeded search until it first evaluates an optimal configuration (None: not within cap)."""
    storage = study_mod.open_storage(f"sqlite:///{db}")
    study, joined = study_mod.open_study(
        storage, f"bench-seed{seed}", question=prep.fingerprint, pareto=False
    )
    found: list[int] = []

    def stop_when_found(study, trial) -> None:
        if trial.user_attrs.get("config") in optimum:
            found.append(trial.number + 1)
            study.stop()

    study_mod.run(
        prep.space,
        prep.question,
        evaluate=prep.evaluate,
        study=study,
        trials=cap,
        seed=seed,
        joined=joined,
        callbacks=[stop_when_found],
    )
    return found[0] if found else None


def main() -> None:
    prep = prepare(MODEL, PROFILES, input_tokens=ISL, output_tokens=OSL, **QUESTION)
    n = prep.space.size
    t0 = time.perf_counter()
    scored = search_stage.solved_setups(prep)
    exhaustive_s = time.perf_counter() - t0
    feasible = [s for s in scored if s.feasible]
    best = feasible[0]
    for s in feasible:
        if better(s, best):
            best = s
    keys = {config_of(s).setup.key for s in feasible if s.output_tokens_per_usd == best.output_tokens_per_usd}
    print(
        f"space: {MODEL} x {', '.join(PROFILES)}, <= {QUESTION['gpus']} GPUs, {QUESTION['concurrency']} clients, "
        f"TPOT <= {QUESTION['slo_tpot_ms']:g} ms, dtypes {'/'.join(QUESTION['dtypes'])}, KV {'/'.join(QUESTION['kv_cache_dtypes'])}"
    )
    print(
        f"  {n} distinct setups, {len(feasible)} feasible; all solved in {exhaustive_s:.1f} s "
        f"({exhaustive_s / n * 1e3:.2f} ms each)"
    )
    print(
        f"  exhaustive optimum ({len(keys)}): {best.profile} {best.label()}: {best.output_tokens_per_usd:,.0f} tokens/USD, "
        f"TPOT {best.tpot_ms:.1f} ms, TTFT {best.ttft_ms:,.0f} ms"
    )
    cap = n // 2
    found: list[int | None] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(SEEDS):
            t0 = time.perf_counter()
            f = trials_to_optimum(prep, keys, seed, cap, Path(tmp) / "bench.db")
            found.append(f)
            shown = f"{f} trials ({f / n:.1%} of the space)" if f else f"not within {cap} trials"
            print(f"  seed {seed}: optimum first evaluated after {shown}, {time.perf_counter() - t0:.1f} s")
    ranked = sorted(f if f is not None else cap + 1 for f in found)
    med = statistics.median(ranked)
    random_draws = (n + 1) / (len(keys) + 1)
    verdict = "within" if med <= n / 4 else "NOT within"
    print(
        f"median over {SEEDS} seeds: {med:g} trials = {med / n:.1%} of the space ({verdict} the 25% target); "
        f"uniform sampling without replacement: {random_draws:,.0f} ({random_draws / n:.0%}) on average"
    )
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            sys.executable,
            "-m",
            "tpplan",
            "search",
            MODEL,
            *(a for p in PROFILES for a in ("--profile", p)),
            "--gpus",
            str(QUESTION["gpus"]),
            "--isl",
            str(ISL),
            "--osl",
            str(OSL),
            "--concurrency",
            str(QUESTION["concurrency"]),
            "--slo-tpot-ms",
            str(QUESTION["slo_tpot_ms"]),
            "--dtype",
            "bf16,fp8",
            "--kv-cache-dtype",
            "auto,fp8",
            "--out",
            tmp,
            "--json",
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    if proc.returncode:
        print(f"full `tpplan search` failed: {proc.stderr.strip().splitlines()[-1]}")
        return
    out = json.loads(proc.stdout)
    b = out["best"]
    hit = (
        "the exhaustive optimum"
        if b["output_tokens_per_usd"] == best.output_tokens_per_usd
        else (f"{b['output_tokens_per_usd'] / best.output_tokens_per_usd:.3f}x the optimum")
    )
    print(
        f"full `tpplan search` (default {out['trials']} trials, SQLite, a fresh process): {wall:.1f} s wall; "
        f"winner {b['profile']} TP={b['tp']} PP={b['pp']} x{b['replicas']} seqs {b['max_num_seqs']} {b['dtype']}: {hit}"
    )
