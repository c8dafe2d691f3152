#!/usr/bin/env bash
# Execute every notebooks/NN_*.ipynb in order, in full mode, into build/:
#     build/notebooks/NAME.ipynb (executed)  and  build/html/NAME.html
# then build the course book from those executed copies (scripts/build_book.py, nothing executed
# twice) into build/book/ (open build/book/index.html).  A notebook that fails stops the book.
# Extra arguments go to scripts/execute_notebooks.py, e.g. --only 01 (no book then), --out DIR,
# --fast.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure_env.sh
unset CVXATTN_FAST  # full sizes, unless --fast is passed explicitly
exec .venv/bin/python scripts/execute_notebooks.py --book "$@"
