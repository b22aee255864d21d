"""Sweep harness cost and all-reduce fidelity, measured side by side in one run on this machine.

- overhead: a whole `tpplan sweep` of the tiny model at TP 1, 2, 4 (fp32): wall time ÷ the time
  inside its timed steps (what spawning ranks, building groups and shards, warm-up and drift cost);
- fidelity: the sweep's all-reduce p50 at TP 2 and 4 ÷ a bare `torch.distributed.all_reduce`
  loop of the same bytes, dtype and ranks (nccl-tests style: barrier, warm-up, timed calls).
  A ratio above 1 is mostly real, not harness: in a step each all-reduce follows compute, so
  gloo's waiting ranks sleep and must be woken and the buffers are cold, which a back-to-back loop
  hides. On a loaded 2-core machine both numbers move by 2x from run to run; the load is printed.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from tpplan import api
from tpplan.records.requests import SweepRequest
from tpplan.sweep import run_sweep
from tpplan.sweep.request import prepare

TPS = [1, 2, 4]
BARE_WARMUP, BARE_ITERS = 10, 200


def _bare_rank(rank: int, world: int, store_path: str, numel: int, out: dict) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store_path, world), rank=rank, world_size=world)
    x = torch.ones(numel)
    times = []
    dist.barrier()
    for i in range(BARE_WARMUP + BARE_ITERS):
        t0 = time.perf_counter()
        dist.all_reduce(x)
        if i >= BARE_WARMUP:
            times.append((time.perf_counter() - t0) * 1e6)
    out[rank] = times
    dist.destroy_process_group()


def bare_allreduce_us(world: int, nbytes: int) -> float:
    """p50 over calls of the fastest rank's time per call (the same statistic the sweep reports)."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp, mp.Manager() as manager:
        out = manager.dict()
        mp.start_processes(
            _bare_rank, args=(world, f"{tmp}/store", nbytes // 4, out), nprocs=world, start_method="spawn"
        )
        per_call = [min(calls) for calls in zip(*(out[r] for r in range(world)), strict=True)]
    return statistics.median(per_call)


def main() -> None:
    model, profile = api.load_model("tiny"), api.load_profile("cpu-local")
    settings, cases, skipped, _ = prepare(model, profile, r=SweepRequest(tp=TPS, dtypes="fp32"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        found = run_sweep(settings, cases, skipped=skipped, out_dir=Path(tmp), resume=False)
        wall = time.perf_counter() - t0
    timed_s = sum(m.step_ms.p50 * m.step_ms.n for m in found if m.step_ms) / 1e3
    bad = [m for m in found if m.status != "ok"]
    print(
        f"sweep of {model.name}, TP {TPS}, fp32, {settings.tokens}x{settings.batch} tokens, "
        f"{settings.warmup}+{settings.iters} steps per case ({len(found)} cases, {len(bad)} not ok)"
    )
    print(f"  harness overhead: wall {wall:.1f} s / timed steps {timed_s:.2f} s = {wall / timed_s:.1f}x")
    print(
        f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; timed = step p50 x timed steps)"
    )
    print("  all-reduce fidelity (sweep p50 / bare all_reduce loop p50, same bytes and ranks):")
    for m in found:
        if m.allreduce is None:
            continue
        bare = bare_allreduce_us(m.tp, m.allreduce.bytes)
        note = "" if m.representative else f"  [{m.ranks_per_core:g} ranks/core: not representative]"
        print(
            f"    TP{m.tp}: {m.allreduce.bytes / 1024:.0f} KiB  sweep {m.allreduce.latency_us.p50:,.0f} us  "
            f"bare {bare:,.0f} us  ratio {m.allreduce.latency_us.p50 / bare:.2f}{note}"
        )
