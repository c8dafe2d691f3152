#!/usr/bin/env bash
# The whole test suite:  bash scripts/test.sh [extra pytest args, e.g. -k packaging -x]
# 1. scripts/ensure_env.sh (creates/updates .venv), 2. Chromium for the browser test,
# 3. ruff check, 4. pytest.  Exits non-zero if anything fails, including "no tests collected".
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
START=$SECONDS
bash scripts/ensure_env.sh
PY=.venv/bin/python

CHROMIUM=/usr/bin/chromium
if [[ ! -x "$CHROMIUM" ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: $CHROMIUM is missing; installing it with apt-get (for the browser test)"
        if ! { apt-get update && apt-get install -y chromium; }; then
            echo "test.sh: WARNING: 'apt-get install chromium' failed" >&2
        fi
    fi
    if [[ ! -x "$CHROMIUM" ]]; then
        echo "test.sh: WARNING: $CHROMIUM is missing, so the browser test will be skipped" \
             "(and fail when CI=true). Install it with: sudo apt-get install chromium" >&2
    fi
fi

status=0
LINT_PATHS=()
for d in cvxattn_lib tests benchmarks scripts; do
    [[ -d "$d" ]] && LINT_PATHS+=("$d")
done
echo "test.sh: ruff check ${LINT_PATHS[*]}"
"$PY" -m ruff check "${LINT_PATHS[@]}" || status=1

echo "test.sh: pytest $*"
rc=0
"$PY" -m pytest -q "$@" || rc=$?
if [[ $rc == 5 ]]; then
    echo "test.sh: pytest collected no tests; that counts as a failure" >&2
fi
[[ $rc == 0 ]] || status=1

if [[ $status == 0 ]]; then
    echo "test.sh: all checks passed in $((SECONDS - START)) s"
else
    echo "test.sh: FAILED (ruff and/or pytest, see above) after $((SECONDS - START)) s" >&2
fi
exit $status
