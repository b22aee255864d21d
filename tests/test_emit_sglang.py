"""SGLang: launch_server flags, its own KV vocabulary, data parallelism and multi-node."""

from __future__ import annotations

import pytest
from emit_helpers import make_plan

from tpplan.emit import emit
from tpplan.errors import LayoutError


def opts(process) -> dict[str, object]:
    return {o.flag: o.value for o in process.options}


def test_single_instance():
    (p,) = emit(
        make_plan(tp=4, kv_cache_dtype="fp8", max_num_seqs=48, model_path="org/m"), "sglang"
    ).processes
    o = opts(p)
    assert p.command == ["python", "-m", "sglang.launch_server"]
    assert (o["--model-path"], o["--tp-size"], o["--pp-size"], o["--max-running-requests"]) == (
        "org/m",
        4,
        1,
        48,
    )
    assert (
        o["--kv-cache-dtype"] == "fp8_e4m3"
        and o["--context-length"] == 4096
        and 0 < o["--mem-fraction-static"] < 1
    )


def test_dp_writes_the_total_running_requests_on_one_node():
    (p,) = emit(make_plan(tp=2, replicas=4, max_num_seqs=32), "sglang", replica_mode="dp").processes
    assert opts(p)["--dp-size"] == 4 and opts(p)["--max-running-requests"] == 128
    with pytest.raises(LayoutError, match="do not share one node"):
        emit(make_plan(tp=4, replicas=4), "sglang", replica_mode="dp")


def test_multi_node_instance():
    head, worker = emit(make_plan(tp=16), "sglang", node_addrs=("10.0.0.1", "10.0.0.2")).processes
    assert opts(head)["--dist-init-addr"] == opts(worker)["--dist-init-addr"] == "10.0.0.1:20000"
    assert (opts(head)["--node-rank"], opts(worker)["--node-rank"]) == (0, 1)
    assert "--port" in opts(head) and "--port" not in opts(worker)


def test_fp16_kv_exists_only_as_auto():
    with pytest.raises(LayoutError, match="no fp16 KV-cache dtype"):
        emit(make_plan(kv_cache_dtype="fp16"), "sglang")
    assert "--kv-cache-dtype" not in opts(
        emit(make_plan(dtype="fp16", kv_cache_dtype="fp16"), "sglang").processes[0]
    )


def test_pp_refused_for_an_architecture_without_it():
    with pytest.raises(LayoutError, match="does not support pipeline parallelism"):
        emit(make_plan("minicpm-2b", tp=1, pp=2), "sglang")
