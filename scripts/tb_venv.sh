#!/usr/bin/env bash
# Create (or reuse) the Python venv `.venv-tb` with TensorBoard and Pillow, used by the tests that
# read norbvae's event files back with TensorBoard's own reader (python/read_tb.py).
#   scripts/tb_venv.sh            # in the repository root; prints the venv's python
# The tests look for .venv-tb/bin/python (or NORBVAE_TB_PYTHON) and skip with a message without it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-tb
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import tensorboard, PIL" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check tensorboard pillow
fi
"$venv/bin/python" -c "import tensorboard; print('tensorboard', tensorboard.__version__)" >&2
echo "$PWD/$venv/bin/python"
