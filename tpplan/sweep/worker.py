"""One rank of a sweep: for each case, build this rank's shard, time warm-up and timed steps, report.

Started by `tpplan sweep` (runner.py) as `python -m tpplan.sweep.worker JOB.json`, one process per
rank, reporting on stdout in `@tpplan {json}` lines; or, across nodes, by torchrun running
`tpplan sweep` on every node (cli/sweep.py), where rank 0 writes results.jsonl itself.

Ranks are laid out replica × stage × tp, TP innermost as vLLM does. A step is one forward pass of
`batch` sequences of `tokens` tokens; with PP it goes through the stages in micro-batches of one
sequence, activations passed with send/recv.
Tests inject faults through faults.inject (TPPLAN_TEST_FAULTS).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..memory import pp_split, stage_layer_ranges
from ..records import Measurement
from . import collect, faults
from . import dist as tpdist
from .cases import PADDED_REFUSED, UNEVEN_REFUSED, Case, SweepJob, SweepSettings, cpu_cores, ffn_width
from .model import (
    TORCH_DTYPES,
    Stack,
    build_block,
    build_norm,
    last_token_logits,
    reference_forward,
    sample_input,
    tolerance_ratio,
)
from .request import layer_params
from .shard import apply_tp
from .timing import NvmlSampler, clock_for

EVENT_PREFIX = "@tpplan "
IDLE_WAIT_FACTOR = 20  # store waits (building, idling, drift reference) allow this × --timeout-s
SERIAL_BUILD_BYTES = 256 * 2**20  # a full fp32 layer larger than this is built by one rank at a time


def emit(event: dict) -> None:
    sys.stdout.write(EVENT_PREFIX + json.dumps(event) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Place:
    """Where a rank sits in a case: replica, pipeline stage, TP rank (TP innermost, then PP, then replica)."""

    rank: int
    tp: int
    pp: int

    @property
    def replica(self) -> int:
        return self.rank // (self.tp * self.pp)

    @property
    def stage(self) -> int:
        return self.rank % (self.tp * self.pp) // self.tp

    @property
    def tp_rank(self) -> int:
        return self.rank % self.tp

    def tp_group(self, replica: int, stage: int) -> list[int]:
        first = (replica * self.pp + stage) * self.tp
        return list(range(first, first + self.tp))

    def instance(self, replica: int) -> list[int]:
        return list(range(replica * self.tp * self.pp, (replica + 1) * self.tp * self.pp))


@dataclass
class Log:
    """Marks of one step's all-reduces and point-to-point waits on this rank."""

    allreduce: list[tuple[Any, Any]] = field(default_factory=list)
    p2p: list[tuple[Any, Any]] = field(default_factory=list)
    ar_bytes: int = 0


class CaseRun:
    """One case on one rank: its groups, its shard, its pipeline step."""

    def __init__(self, world: tpdist.World, s: SweepSettings, idx: int, case: Case) -> None:
        self.world, self.s, self.case = world, s, case
        self.place = Place(world.rank, case.tp, case.pp)
        self.dtype = TORCH_DTYPES[case.dtype]
        self.clock = clock_for(world.device.type)
        self.log = Log()
        p = self.place
        # every rank creates every group of the case, in the same order (new_group is collective)
        tp_groups = (
            {(r, st): world.group(p.tp_group(r, st)) for r in range(case.replicas) for st in range(case.pp)}
            if case.tp > 1
            else {}
        )
        inst = {r: world.group(p.instance(r)) for r in range(case.replicas)} if case.tp * case.pp > 1 else {}
        self.tp_group = tp_groups.get((p.replica, p.stage))
        self.instance_group = inst.get(p.replica)
        layers = stage_layer_ranges(pp_split(s.layers, case.pp))[p.stage]
        self.last_stage = p.stage == case.pp - 1
        # Build one full layer at a time and keep only this rank's shard. A large layer is built by
        # one rank at a time, so the host holds a single full layer however many ranks it runs.
        serial = layer_params(s.model) * 4 > SERIAL_BUILD_BYTES
        if serial and world.rank > 0:
            world.get(f"c{idx}/build/{world.rank}", IDLE_WAIT_FACTOR * s.timeout_s + 60)
        blocks = []
        for i in layers:
            block = build_block(s.model, i, seed=s.seed)
            self.heads = apply_tp(
                [block], case.tp, tp_rank=p.tp_rank, heads_mode=case.heads_mode, all_reduce=self._all_reduce
            )
            blocks.append(block.to(device=world.device, dtype=self.dtype))
        if serial:
            world.put(f"c{idx}/build/{world.rank + 1}", "go")
        norm = build_norm(s.model, s.seed) if self.last_stage else None
        self.stack = Stack(blocks, norm, s.model.head_dim).to(device=world.device, dtype=self.dtype)
        self.microbatches = s.batch if case.pp > 1 else 1
        x = sample_input(s.model, s.batch, tokens=s.tokens, seed=s.seed).to(world.device, self.dtype)
        self.x = x
        self.inputs = list(x.chunk(self.microbatches)) if p.stage == 0 else []
        self.output: torch.Tensor | None = None

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        a = self.clock.mark()
        dist.all_reduce(t, group=self.tp_group)
        self.log.allreduce.append((a, self.clock.mark()))
        self.log.ar_bytes = t.numel() * t.element_size()
        return t

    @torch.no_grad()
    def step(self) -> None:
        """One forward pass through this rank's stage, micro-batch by micro-batch (GPipe order)."""
        p, mb_shape = self.place, (self.s.batch // self.microbatches, self.s.tokens, self.s.model.hidden_size)
        sends, outs = [], []
        for m in range(self.microbatches):
            if p.stage == 0:
                h = self.inputs[m]
            else:
                h = torch.empty(mb_shape, dtype=self.dtype, device=self.world.device)
                a = self.clock.mark()
                dist.recv(h, src=self.world.rank - self.case.tp)
                self.log.p2p.append((a, self.clock.mark()))
            y = self.stack(h)
            if self.last_stage:
                outs.append(y)
            else:
                sends.append(dist.isend(y.contiguous(), dst=self.world.rank + self.case.tp))
        for work in sends:
            a = self.clock.mark()
            work.wait()
            self.log.p2p.append((a, self.clock.mark()))
        if self.last_stage:
            self.output = torch.cat(outs)

    def timed(
        self, tick: Callable[[str, int, int], None], phase: str, *, inject: bool = False
    ) -> dict[str, list]:
        """Warm-up then timed steps, each started by a barrier of this instance's ranks (nccl-tests style)."""
        out: dict[str, list] = {"step_ms": [], "ar_ms": [], "p2p_ms": [], "cpu_ms": []}
        n = self.s.warmup + self.s.iters
        for i in range(n):
            if self.instance_group is not None:
                dist.barrier(group=self.instance_group)
            self.log = Log(ar_bytes=self.log.ar_bytes)
            self.clock.sync()
            cpu0, t0 = time.thread_time(), self.clock.mark()
            if inject and i == self.s.warmup:
                faults.inject(
                    self.world.rank, self.case.key, device=self.world.device, timeout_s=self.s.timeout_s
                )
            self.step()
            t1 = self.clock.mark()
            self.clock.sync()
            cpu1 = time.thread_time()
            if i >= self.s.warmup:
                ms = self.clock.ms
                out["step_ms"].append(ms(t0, t1))
                out["ar_ms"].append([ms(a, b) for a, b in self.log.allreduce])
                out["p2p_ms"].append(sum(ms(a, b) for a, b in self.log.p2p))
                out["cpu_ms"].append((cpu1 - cpu0) * 1e3)
            tick(phase, i + 1, n)
        return out

    @torch.no_grad()
    def drift(self) -> dict:
        """This TP=N output against the TP=1 model on the same seed, input and dtype."""
        assert self.output is not None
        ref = reference_forward(self.s.model, self.s.layers, x=self.x, seed=self.s.seed)
        out, ref32 = self.output.float(), ref.float()
        logits, ref_logits = last_token_logits(
            self.s.model, torch.cat([self.output, ref]), seed=self.s.seed
        ).chunk(2)
        d = (logits - ref_logits).abs()
        atol, rtol = self.s.tolerance(self.case.dtype)
        tol = dict(atol=atol, rtol=rtol)  # by name: allclose's third argument is rtol
        close = torch.allclose(logits, ref_logits, **tol) and torch.allclose(out, ref32, **tol)
        ratios = [tolerance_ratio(logits, ref_logits, **tol), tolerance_ratio(out, ref32, **tol)]
        return {
            "dtype": self.case.dtype,
            "reference": "TP=1, unpadded, same seed, input and dtype (fp32 LM head on both)",
            "max_abs": d.max().item(),
            "max_rel": (d / ref_logits.abs().clamp_min(max(atol, 1e-12))).max().item(),
            "hidden_max_abs": (out - ref32).abs().max().item(),
            "allclose": bool(close),
            # JSON has no inf or NaN (and max() would pass over a NaN): a non-finite ratio is not recorded
            "tolerance_ratio": max(ratios) if all(map(math.isfinite, ratios)) else None,
        }


def run_case(
    world: tpdist.World, s: SweepSettings, *, idx: int, case: Case, tick: Callable
) -> Measurement | None:
    """Measure `case` on every rank; rank 0 returns the Measurement, the others None."""
    wait_s = IDLE_WAIT_FACTOR * s.timeout_s + 60
    c = CaseRun(world, s, idx, case)
    p = c.place
    world.store_barrier(f"c{idx}/built", world.size, wait_s=wait_s)
    tick("built", 0, 0)
    alone = None
    if case.replicas > 1:  # replica 0 alone first, the others idle: the "R × one instance" baseline
        if p.replica == 0:
            alone = c.timed(tick, "alone")["step_ms"]
        world.store_barrier(f"c{idx}/alone", world.size, wait_s=wait_s)
    sampler = NvmlSampler(world.device.index or 0) if world.device.type == "cuda" else None
    if sampler:
        sampler.start()
    timed = c.timed(tick, "timed", inject=True)
    sample = {
        "rank": world.rank,
        "replica": p.replica,
        "stage": p.stage,
        "tp_rank": p.tp_rank,
        "heads": len(c.heads.q),
        "kv_heads": len(c.heads.kv),
        "ar_bytes": c.log.ar_bytes,
        "alone_step_ms": alone,
        "gpu_util": sampler.stop() if sampler else None,
        **timed,
    }
    if world.device.type != "cpu":
        sample["cpu_ms"] = []  # CPU time says nothing about GPU work
    drift_rank = p.instance(0)[-case.tp]  # replica 0, last stage, TP rank 0
    if world.rank == drift_rank:
        tick("drift", 0, 0)
        world.put(f"c{idx}/drift", json.dumps(c.drift()))
    world.put(f"c{idx}/sample/{world.rank}", json.dumps(sample))
    result = None
    if world.rank == 0:
        samples = [json.loads(world.get(f"c{idx}/sample/{r}", wait_s)) for r in range(world.size)]
        drift = json.loads(world.get(f"c{idx}/drift", wait_s))
        per_core, notes, mb = ranks_per_core(world), case_notes(s, case), c.microbatches
        result = collect.measurement(
            s, case, samples=samples, drift=drift, ranks_per_core=per_core, microbatches=mb, notes=notes
        )
    del c
    world.store_barrier(f"c{idx}/done", world.size, wait_s=wait_s)
    return result


def ranks_per_core(world: tpdist.World) -> float:
    return round(world.local_size / cpu_cores(), 3)


def case_notes(s: SweepSettings, case: Case) -> list[str]:
    """What a reader of this case's numbers must know about how they were obtained."""
    m, notes = s.model, []
    if s.layers < m.num_layers:
        notes.append(
            f"measured {s.layers} of {m.num_layers} real-width layers; step time and tokens/s are scaled "
            f"by depth (×{m.num_layers / s.layers:g})"
        )
    if case.heads_mode == "uneven":
        notes.append(f"uneven heads: {UNEVEN_REFUSED}")
    if case.heads_mode == "padded":
        notes.append(f"padded heads: {PADDED_REFUSED}")
    if case.pp > 1 and s.batch < case.pp:
        notes.append(
            f"batch {s.batch} < pp {case.pp}: fewer micro-batches than stages, the pipeline never fills"
        )
    if m.moe:
        notes.append(
            f"MoE layers run as a dense FFN of the active width ({ffn_width(m)}); routing and expert "
            "imbalance are not measured"
        )
    if m.mla:
        notes.append("MLA attention runs as standard attention with the same heads and head_dim")
    notes.append("prefill step of decoder layers; embedding lookup and LM head are not timed")
    if s.backend == "gloo":
        load, cores = os.getloadavg()[0], cpu_cores()
        notes.append(
            f"CPU ranks, one thread each; load average {load:.1f} on {cores} core(s) when the case ran"
            + (" (other processes competed for the cores)" if load > cores else "")
        )
    return notes


def run(job: SweepJob, sink: Callable[[Measurement], None], skip: set[str] | None = None) -> None:
    """This rank's whole sweep: join the group, run every case in order; a fault ends the process."""
    s = job.settings
    world = tpdist.init(s.backend, s.timeout_s)
    if world.device.type == "cpu":
        # A CPU rank stands for one device: one thread, so TP=N uses N cores as it would use N GPUs
        # (and OpenMP threads spinning on a shared, loaded core slow a step tenfold).
        torch.set_num_threads(1)
    local = not tpdist.under_torchrun()

    def tick(phase: str, done: int, total: int) -> None:
        if local and (world.rank == 0 or phase == "drift"):
            emit({"ev": "tick", "rank": world.rank, "phase": phase, "done": done, "of": total})

    if local and world.rank == 0:
        emit({"ev": "ready", "ranks": world.size})
    if not local:  # rank 0 read results.jsonl; every rank must skip the same cases
        if world.rank == 0:
            world.put("skip", json.dumps(sorted(skip or ())))
        skip = set(json.loads(world.get("skip", IDLE_WAIT_FACTOR * s.timeout_s)))
    uneven: dict[tuple, Measurement] = {}  # the uneven form of a layout, to price its padded form
    for idx, case in enumerate(job.cases):
        if skip and case.key in skip:
            continue
        try:
            result = run_case(world, s, idx=idx, case=case, tick=tick)
        except Exception as e:
            status, reason = faults.classify(e)
            _report_fault(world, s, idx, case, (status, f"rank {world.rank}: {reason}"), sink, local)
            os._exit(1)  # the group is broken; the runner (or torchrun) starts a new one
        if result is not None:
            layout = (case.tp, case.pp, case.replicas, case.dtype)
            if case.heads_mode == "uneven":
                uneven[layout] = result
            elif case.heads_mode == "padded" and layout in uneven:
                result = collect.with_padding_cost(result, uneven[layout])
            sink(result)
    tpdist.teardown()


def _report_fault(
    world: tpdist.World,
    s: SweepSettings,
    idx: int,
    case: Case,
    fault: tuple[str, str],
    sink: Callable[[Measurement], None],
    local: bool,
) -> None:
    status, reason = fault
    if local:
        emit({"ev": "fault", "rank": world.rank, "status": status, "reason": reason})
        return
    # Under torchrun there is no runner: rank 0 records the case at once (its agent stops it as soon
    # as it learns of the failure), with the most telling cause any rank has reported by then.
    try:
        world.put(f"c{idx}/fault/{world.rank}", json.dumps([status, reason]))
        if world.rank == 0:
            found = [
                json.loads(world.store.get(f"c{idx}/fault/{r}"))
                for r in range(world.size)
                if world.store.check([f"c{idx}/fault/{r}"])
            ]
            status, reason = min(found, key=lambda f: faults.PRIORITY.index(f[0]))
            sink(collect.failure(s, case, status=status, reason=reason, ranks_per_core=ranks_per_core(world)))
    except Exception:  # the store may be gone with the rank that hosted it; torchrun restarts the group
        pass


def _watch_parent() -> None:
    """The runner holds our stdin open; EOF means it is gone, so this rank must go too."""

    def watch() -> None:
        sys.stdin.read()
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str]) -> int:
    job = SweepJob.model_validate_json(Path(argv[0]).read_text())
    if os.environ.get("TPPLAN_WATCH_STDIN"):
        _watch_parent()
    run(job, lambda m: emit({"ev": "result", "measurement": json.loads(m.model_dump_json())}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
