#!/usr/bin/env bash
# Put a torch into the environment of $PY without ever replacing one that is there, and
# without pulling a multi-GB CUDA build onto a machine that has no GPU.
#
#   1. torch already importable (a user's CUDA build, say): leave it alone.
#   2. a torch wheel is available without the network (pip's find-links, e.g. the CPU
#      build this project's dev machines keep on disk): install that one, then its deps.
#   3. no NVIDIA driver here: take the CPU build from PyTorch's CPU index.
#   4. otherwise (a GPU machine): the default PyPI build, which is the CUDA one.
set -euo pipefail
PY=${PY:-python3}
PIP="$PY -m pip --disable-pip-version-check"

if "$PY" -c "import torch" 2>/dev/null; then
  echo "install-torch: keeping $("$PY" -c 'import torch; print(torch.__version__)')"
  exit 0
fi
if $PIP install --quiet --no-index --no-deps "torch>=2.4" 2>/dev/null; then
  ver=$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))')
  echo "install-torch: installed local wheel torch $ver"
  $PIP install --quiet "torch==$ver"   # its dependencies (sympy, networkx, ...) from the index
  exit 0
fi
if ! command -v nvidia-smi >/dev/null 2>&1 && [ ! -e /dev/nvidiactl ]; then
  echo "install-torch: no NVIDIA driver found; installing the CPU build"
  $PIP install --quiet "torch>=2.4" --index-url https://download.pytorch.org/whl/cpu \
    --extra-index-url https://pypi.org/simple
  exit 0
fi
echo "install-torch: NVIDIA driver found; installing the default (CUDA) build"
$PIP install --quiet "torch>=2.4"
