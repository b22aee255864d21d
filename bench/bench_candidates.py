"""Layout enumeration speed: candidates for every bundled profile × a 70B and an MoE model."""

from __future__ import annotations

import time

from tpplan import api
from tpplan.candidates import candidates


def main() -> None:
    models = [api.load_model(n) for n in ("llama-3.1-70b", "mixtral-8x7b")]
    profiles = [p for _, p in api.list_profiles()]
    t0 = time.perf_counter()
    n = 0
    for m in models:
        for p in profiles:
            for engine in ("vllm", "megatron", "sglang"):
                n += len(candidates(m, p, engine=engine, budget_gpus=min(p.total_gpus, 16)))
    dt = time.perf_counter() - t0
    print(f"{n} layouts judged in {dt * 1e3:.0f} ms ({dt / n * 1e6:.0f} us per layout)")
