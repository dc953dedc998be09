#!/usr/bin/env bash
# Create (or reuse) the Python venv `.venv-torch` with PyTorch, safetensors and numpy: the PyTorch
# loader's test (python/norbvae_torch.py, tests/torch_loader.rs) and the benchmarks' PyTorch side
# (bench/pytorch_workloads.py) run in it. torch from PyPI is large (~4 GB with its CUDA libraries);
# the venv is made once and reused.
#   scripts/torch_venv.sh            # in the repository root; prints the venv's python
# The tests look for .venv-torch/bin/python (or NORBVAE_TORCH_PYTHON) and skip with a message
# without it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-torch
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, safetensors, numpy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    torch safetensors numpy
fi
"$venv/bin/python" -c "import torch; print('torch', torch.__version__)" >&2
echo "$PWD/$venv/bin/python"
