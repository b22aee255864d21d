"""What each engine accepts for expert parallelism (EP) and data-parallel attention (DP attention).

An instance keeps tp GPUs per pipeline stage; within them the routed experts may be split whole over
`ep` ranks (expert TP = tp / ep) and attention may run as `dp` groups of tp / dp GPUs, each on its
own requests. How the engines spell it (reference/engines/*.tsv, README.md):

- vLLM 0.33: `--tensor-parallel-size tp/dp --data-parallel-size dp [--enable-expert-parallel]`. The
  MoE layers then form one group of TP × DP ranks, and with `--enable-expert-parallel` that group is
  the EP group (EP size = TP × DP, docs/serving/expert_parallel_deployment.md; reference README §4.3:
  "With --enable-expert-parallel, experts are split over TP·DP"), so ep is 1 or tp.
- SGLang 0.5.23: `--tp-size tp --enable-dp-attention --dp-size dp --ep-size ep`; tp_size is the
  GPU count of the engine, DP attention included: tp % dp == 0 (parallel_hook.py:326) and
  ep · moe_dp <= tp with moe_dp = 1 (:172-176).
- Megatron-LM @d98e8a6: `--expert-model-parallel-size ep --expert-tensor-parallel-size tp/ep`;
  num_experts % ep == 0 (arguments.py:1656-1658), world % (etp · ep · pp) == 0
  (parallel_state.initialize_model_parallel). Its text-generation server runs one model copy
  (DP = 1), so it has no DP attention.
"""

from __future__ import annotations

from .records import Reason
from .specs import ModelSpec

NAMES = {"vllm": "vLLM", "sglang": "SGLang", "megatron": "Megatron-LM"}


def _rule(text: str, source: str | None = None) -> Reason:
    return Reason(kind="engine", text=text, source=source)


def reasons(engine: str, model: ModelSpec, *, tp: int, pp: int, ep: int, dp: int) -> list[Reason]:
    """Why `engine` refuses experts over `ep` ranks and `dp` attention groups at tp × pp (empty: it
    accepts them). ep = dp = 1 is plain TP and always passes here."""
    if ep == 1 and dp == 1:
        return []
    name = NAMES[engine]
    if model.moe is None:
        return [
            _rule(
                f"expert parallelism and DP attention apply to mixture-of-experts models; {model.name} is dense "
                "(its data parallelism is replicas)"
            )
        ]
    out: list[Reason] = []
    if tp % ep or tp % dp:
        out.append(_rule(f"ep ({ep}) and dp attention ({dp}) must divide tp ({tp}): they split one instance"))
    experts = model.moe.num_experts
    if ep > 1 and experts % ep:
        source = "Megatron-LM: arguments.py:1656-1658" if engine == "megatron" else None
        out.append(_rule(f"num_experts ({experts}) is not divisible by ep ({ep})", source))
    if engine == "vllm" and ep not in (1, tp):
        out.append(
            _rule(
                f"vLLM's expert-parallel group is the instance's whole TP × DP group (EP = {tp}); ep ({ep}) "
                "must be 1 or tp",
                "vLLM: docs/serving/expert_parallel_deployment.md",
            )
        )
    if engine == "megatron" and dp > 1:
        out.append(
            _rule(
                f"{name}'s text-generation server runs one model copy (DP = 1): no data-parallel attention",
                "Megatron-LM: tools/run_text_generation_server.py",
            )
        )
    return out


def modes(engine: str, model: ModelSpec, *, tp: int, pp: int = 1) -> tuple[tuple[int, int], ...]:
    """(ep, dp) pairs the search tries at tp: plain TP first, then EP over the tp GPUs, DP attention
    over all of them with and without EP. Only for MoE models at tp > 1; only what the engine accepts."""
    if model.moe is None or tp == 1:
        return ((1, 1),)
    wanted = ((1, 1), (tp, 1), (tp, tp), (1, tp))
    return tuple(m for m in wanted if not reasons(engine, model, tp=tp, pp=pp, ep=m[0], dp=m[1]))
