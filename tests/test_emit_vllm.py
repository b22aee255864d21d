"""vLLM: single node, replicas as instances or data parallelism, multi-node on the mp backend."""

from __future__ import annotations

import pytest
from emit_helpers import argv_of, make_plan

from tpplan.emit import emit, render
from tpplan.errors import LayoutError


def opts(process) -> dict[str, object]:
    return {o.flag: o.value for o in process.options}


def test_single_instance_carries_the_plan():
    plan = make_plan(tp=4, pp=1, max_num_seqs=96, max_model_len=8192, kv_cache_dtype="fp8", memory_fraction=0.88,
                     model_path="meta-llama/Llama-3.1-70B-Instruct")  # fmt: skip
    (p,) = emit(plan, "vllm").processes
    assert p.command == ["vllm", "serve", "meta-llama/Llama-3.1-70B-Instruct"]
    assert opts(p) == {
        "--tensor-parallel-size": 4, "--pipeline-parallel-size": 1, "--max-model-len": 8192, "--max-num-seqs": 96,
        "--gpu-memory-utilization": 0.88, "--dtype": "bfloat16", "--kv-cache-dtype": "fp8", "--port": 8000,
    }  # fmt: skip
    assert p.env == {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}


@pytest.mark.parametrize(
    "dtype,kv,written",
    [("bf16", "auto", None), ("bf16", "bf16", None), ("bf16", "fp16", "float16"), ("fp8", "auto", None),
     ("fp8", "bf16", None), ("fp8", "fp8", "fp8"), ("fp16", "auto", None), ("bf16", "fp8", "fp8")],
)  # fmt: skip
def test_kv_cache_dtype_is_written_when_it_differs_from_the_activations(dtype, kv, written):
    """A plan's "auto" KV means what vLLM's does, the activation dtype (bf16 under fp8 weights): no flag."""
    o = opts(emit(make_plan(tp=2, dtype=dtype, kv_cache_dtype=kv), "vllm").processes[0])
    assert o.get("--kv-cache-dtype") == written


def test_fp8_weights_quantize_and_a_foreign_fraction_is_not_carried():
    plan = make_plan(tp=2, dtype="fp8", memory_fraction=0.7, engine="sglang")
    launch = emit(plan, "vllm")
    o = opts(launch.processes[0])
    assert o["--quantization"] == "fp8" and o["--dtype"] == "bfloat16"
    assert o["--gpu-memory-utilization"] == 0.92  # vLLM's default: the plan's 0.7 was SGLang's
    assert any("chosen for sglang" in n for n in launch.notes)


def test_replicas_as_instances_use_disjoint_gpus_and_ports():
    launch = emit(make_plan(tp=2, replicas=8), "vllm", base_port=9000)
    assert [p.port for p in launch.processes] == list(range(9000, 9008))
    assert [(p.node, p.env["CUDA_VISIBLE_DEVICES"]) for p in launch.processes[:5]] == [
        (0, "0,1"), (0, "2,3"), (0, "4,5"), (0, "6,7"), (1, "0,1")]  # fmt: skip
    assert all("--data-parallel-size" not in opts(p) for p in launch.processes)
    text = render(launch)
    assert text.count(" &\n") == 8 and text.count("\nwait") == 2  # each node's servers run side by side


def test_replicas_as_data_parallelism_on_one_and_two_nodes():
    (one,) = emit(make_plan(tp=2, replicas=4), "vllm", replica_mode="dp").processes
    assert opts(one)["--data-parallel-size"] == 4 and one.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    assert "--data-parallel-address" not in opts(one)
    head, worker = emit(
        make_plan(tp=4, replicas=4), "vllm", replica_mode="dp", node_addrs=("10.0.0.1", "10.0.0.2")
    ).processes
    assert opts(head)["--data-parallel-size-local"] == 2 and "--headless" not in opts(head)
    assert opts(worker)["--data-parallel-start-rank"] == 2 and "--headless" in opts(worker)
    assert opts(worker)["--data-parallel-address"] == "10.0.0.1" and "--port" not in opts(worker)
    assert worker.replicas == [2, 3] and worker.port is None


def test_data_parallelism_is_refused_where_vllm_would_couple_or_span():
    with pytest.raises(LayoutError, match="mixture of experts"):
        emit(make_plan("mixtral-8x7b", tp=2, replicas=2), "vllm", replica_mode="dp")
    with pytest.raises(LayoutError, match="spans nodes"):
        emit(make_plan(tp=8, pp=2, replicas=2), "vllm", replica_mode="dp")


def test_instance_across_nodes_uses_the_multiprocessing_backend():
    launch = emit(make_plan(tp=8, pp=2, replicas=2), "vllm", node_addrs=("a0", "a1", "a2", "a3"))
    assert [(p.node, p.role) for p in launch.processes] == [
        (0, "head"),
        (1, "worker"),
        (2, "head"),
        (3, "worker"),
    ]
    argvs = argv_of(render(launch))
    assert argvs[1][-7:] == ["--nnodes", "2", "--node-rank", "1", "--master-addr", "a0", "--headless"]
    assert argvs[2][argvs[2].index("--master-addr") + 1] == "a2"  # replica 1's own head
    assert "--port" in argvs[2] and "--port" not in argvs[3]
