#!/usr/bin/env bash
# Execute every notebooks/NN_*.ipynb in order, in full mode, into build/:
#     build/notebooks/NAME.ipynb (executed)  and  build/html/NAME.html
# Extra arguments go to scripts/execute_notebooks.py, e.g. --only 01, --out DIR, --fast.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure_env.sh
unset CVXATTN_FAST  # full sizes, unless --fast is passed explicitly
exec .venv/bin/python scripts/execute_notebooks.py "$@"
