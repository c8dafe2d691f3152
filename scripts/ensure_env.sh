#!/usr/bin/env bash
# Create .venv (Python >= 3.11) if missing and install the project with the tested CI set:
#     pip install -e ".[dev,cifar,lab,book]" -c scripts/constraints-ci.txt
# Idempotent: a stamp in .venv records a hash of pyproject.toml, the constraints and this script,
# so a re-run with nothing changed returns in well under a second.  Touches nothing outside .venv.
# Override the interpreter used to create .venv with PYTHON=/path/to/python3.11.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
CONSTRAINTS=scripts/constraints-ci.txt
STAMP="$VENV/.cvxattn-env-stamp"

version_ok() {  # $1 = interpreter; true when it runs and is Python >= 3.11
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

find_python() {
    local cand
    for cand in ${PYTHON:-} python3.11 python3 python3.12 python3.13 python; do
        if command -v "$cand" >/dev/null 2>&1 && version_ok "$(command -v "$cand")"; then
            command -v "$cand"
            return 0
        fi
    done
    return 1
}

if [[ -e "$VENV" && ! -x "$VENV/bin/python" ]]; then
    echo "ensure_env: $VENV exists but has no bin/python; remove it (rm -rf $VENV) and re-run" >&2
    exit 1
fi
if [[ -x "$VENV/bin/python" ]] && ! version_ok "$VENV/bin/python"; then
    echo "ensure_env: $VENV uses $("$VENV/bin/python" --version 2>&1), but Python >= 3.11 is" \
         "needed; remove it (rm -rf $VENV) and re-run" >&2
    exit 1
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    if [[ -n "${PYTHON:-}" ]] && ! version_ok "$PYTHON"; then
        found="not found"
        command -v "$PYTHON" >/dev/null 2>&1 && found="$("$PYTHON" --version 2>&1)"
        echo "ensure_env: PYTHON=$PYTHON is not a usable Python >= 3.11 ($found)" >&2
        exit 1
    fi
    if ! BASE_PY="$(find_python)"; then
        echo "ensure_env: no Python >= 3.11 found (tried \$PYTHON, python3.11, python3, python3.12," \
             "python3.13, python)." >&2
        echo "  Install Python 3.11 (e.g. 'apt-get install python3 python3-venv', pyenv or conda)" \
             "or point PYTHON at one: PYTHON=/path/to/python3.11 bash $0" >&2
        exit 1
    fi
    echo "ensure_env: creating $VENV with $BASE_PY ($("$BASE_PY" --version 2>&1))"
    if ! "$BASE_PY" -m venv "$VENV"; then
        echo "ensure_env: 'python -m venv' failed; on Debian/Ubuntu install python3-venv" >&2
        rm -rf "$VENV"
        exit 1
    fi
fi

PY="$VENV/bin/python"
HASH="$("$PY" - "$CONSTRAINTS" <<'EOF'
import hashlib, sys
h = hashlib.sha256(sys.version.encode())
for name in ["pyproject.toml", sys.argv[1], "scripts/ensure_env.sh"]:
    h.update(open(name, "rb").read())
print(h.hexdigest())
EOF
)"

installed() {  # the stamp matches and the project is still installed in the venv
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]] &&
        "$PY" -c 'import importlib.metadata as m; m.version("cvxattn")' 2>/dev/null
}

if installed; then
    exit 0
fi

echo "ensure_env: installing the project into $VENV (first run or changed pyproject/constraints)"
rm -f "$STAMP"
"$PY" -m pip install -e ".[dev,cifar,lab,book]" -c "$CONSTRAINTS"
echo "$HASH" > "$STAMP"
echo "ensure_env: $VENV is ready ($("$PY" --version 2>&1))"
