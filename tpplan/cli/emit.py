"""`tpplan emit`: a plan file → the commands that launch it."""

from __future__ import annotations

from pathlib import Path

import click

from .common import echo_json, json_option


@click.command()
@click.argument("plan", metavar="PLAN", type=click.Path(path_type=Path))
@click.option(
    "--engine",
    type=click.Choice(["vllm", "megatron", "sglang"]),
    default=None,
    help="Engine to launch on (default: the engine the plan was made for).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["cli", "yaml"]),
    default="cli",
    show_default=True,
    help="cli: a bash script of commands; yaml: a `--config` file for vLLM or SGLang (its header "
    "has the commands that use it).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout (a cli script is made executable).",
)
@click.option(
    "--replicas",
    "replica_mode",
    type=click.Choice(["instances", "dp"]),
    default="instances",
    show_default=True,
    help="instances: one server per replica on its own GPUs and port; dp: one endpoint with the "
    "engine's data parallelism (vLLM, SGLang).",
)
@click.option(
    "--model-path", help="What the engine loads (HF repo id or local dir); overrides the plan's model_path."
)
@click.option(
    "--hf-id",
    metavar="ORG/NAME",
    help="Hugging Face repo id to serve; what the engine loads unless --model-path names a local dir.",
)
@click.option(
    "--served-model",
    metavar="NAME",
    help="Name clients send in requests (vLLM/SGLang --served-model-name; default: the plan's).",
)
@click.option(
    "--port", type=int, help="First HTTP port; replica k serves on port + k (default: the engine's)."
)
@click.option(
    "--node-addrs",
    metavar="ADDR,ADDR,...",
    help="Addresses of node 0, 1, ... of a multi-node deployment (default: read from NODE<i>_ADDR).",
)
@click.option(
    "--checkpoint",
    metavar="DIR",
    help="Megatron-LM checkpoint directory for --load (default: read from CHECKPOINT_DIR).",
)
@json_option
def emit(
    plan: Path,
    engine: str | None,
    fmt: str,
    out: Path | None,
    replica_mode: str,
    model_path: str | None,
    hf_id: str | None,
    served_model: str | None,
    port: int | None,
    node_addrs: str | None,
    checkpoint: str | None,
    as_json: bool,
) -> None:
    """Turn a plan into launch commands for vLLM, Megatron-LM or SGLang.

    PLAN is the YAML or JSON file `tpplan search` writes. Every flag written exists in that
    engine, every layout passes the engine's own rules first (refused with the rule otherwise),
    and every value is shell-quoted. Values the plan cannot know (a node's address, a Megatron
    checkpoint) are read from environment variables named in the output's header.

    \b
    Examples:
      tpplan emit plan.yaml                                  # the plan's engine, bash commands
      tpplan emit plan.yaml --engine sglang --out launch-sglang.sh
      tpplan emit plan.yaml --engine vllm --format yaml --out vllm.yaml
      tpplan emit plan.yaml --engine vllm --replicas dp --node-addrs 10.0.0.1,10.0.0.2
      tpplan emit plan.yaml --engine megatron --checkpoint /ckpt/llama70b --model-path meta-llama/Llama-3.1-70B
      tpplan emit plan.yaml --hf-id meta-llama/Llama-3.1-70B-Instruct --served-model llama-70b
      tpplan emit plan.yaml --json | jq '.launch.processes[0].options'
    """
    from .. import api

    # Split keeping empty items: the request refuses '10.0.0.1,' by name instead of dropping the gap.
    addrs = tuple(a.strip() for a in node_addrs.split(",")) if node_addrs else ()
    launch, text = api.emit_plan(
        plan,
        engine,
        fmt=fmt,
        out=out,
        replica_mode=replica_mode,
        port=port,
        node_addrs=addrs,
        checkpoint=checkpoint,
        model_path=model_path,
        hf_id=hf_id,
        served_model=served_model,
    )
    for note in launch.notes:
        if note.startswith("warning:"):
            click.echo(note, err=True)
    if as_json:
        echo_json({"launch": launch, "text": text, "out": str(out) if out else None})
    elif out is not None:
        click.echo(f"wrote {out} ({len(launch.processes)} process(es) on {launch.nodes} node(s))")
    else:
        click.echo(text, nl=False)


COMMANDS = [emit]
