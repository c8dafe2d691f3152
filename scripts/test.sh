#!/usr/bin/env bash
# The test suite:  bash scripts/test.sh [--quick] [extra pytest args, e.g. -k packaging -x]
# 1. scripts/ensure_env.sh (creates/updates .venv), 2. Chromium for the browser tests (see below),
# 3. ruff check, 4. pytest.  Exits non-zero if anything fails, including "no tests collected".
#
# --quick   the quick lane: every library module's fast tests, without the notebook, browser and
#           slow tests (-m "not slow and not notebook and not browser"), in one process.
# Otherwise the whole suite runs on CVXATTN_TEST_WORKERS pytest-xdist workers (default 2; 0 = one
# process); the browser tests share one worker and one JupyterLab server (xdist_group "browser").
# Chromium is installed with apt-get only when CVXATTN_INSTALL_BROWSER=1 and this runs as root
# (.ci/run sets it); otherwise a missing /usr/bin/chromium skips the browser tests (fails if CI=true).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
START=$SECONDS
QUICK=0
if [[ "${1:-}" == "--quick" ]]; then
    QUICK=1
    shift
fi
bash scripts/ensure_env.sh
PY=.venv/bin/python

CHROMIUM="${CVXATTN_CHROMIUM:-/usr/bin/chromium}"  # the override is for tests/test_packaging.py
if [[ $QUICK == 0 && ! -x "$CHROMIUM" ]]; then
    if [[ "${CVXATTN_INSTALL_BROWSER:-0}" == 1 ]]; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
            echo "test.sh: $CHROMIUM is missing; installing it with apt-get (CVXATTN_INSTALL_BROWSER=1)"
            if ! { apt-get update && apt-get install -y chromium; }; then
                echo "test.sh: WARNING: 'apt-get install chromium' failed" >&2
            fi
        else
            echo "test.sh: WARNING: CVXATTN_INSTALL_BROWSER=1, but installing Chromium needs root" \
                 "and apt-get" >&2
        fi
    fi
    if [[ ! -x "$CHROMIUM" ]]; then
        echo "test.sh: WARNING: $CHROMIUM is missing, so the browser tests will be skipped" \
             "(and fail when CI=true). Install it with: sudo apt-get install chromium," \
             "or let this script do it: CVXATTN_INSTALL_BROWSER=1 bash scripts/test.sh (as root)" >&2
    fi
fi

status=0
LINT_PATHS=()
for d in cvxattn_lib tests benchmarks scripts; do
    [[ -d "$d" ]] && LINT_PATHS+=("$d")
done
echo "test.sh: ruff check ${LINT_PATHS[*]}"
"$PY" -m ruff check "${LINT_PATHS[@]}" || status=1

ARGS=()
if [[ $QUICK == 1 ]]; then
    ARGS=(-m "not slow and not notebook and not browser")
else
    WORKERS="${CVXATTN_TEST_WORKERS:-2}"
    if ! [[ "$WORKERS" =~ ^([0-9]+|auto)$ ]]; then
        echo "test.sh: CVXATTN_TEST_WORKERS must be a number or 'auto', got '$WORKERS'" >&2
        exit 2
    fi
    if [[ "$WORKERS" != 0 ]]; then
        ARGS=(-n "$WORKERS" --dist loadgroup)
    fi
fi
echo "test.sh: pytest ${ARGS[*]} $*"
rc=0
"$PY" -m pytest -q --durations=15 "${ARGS[@]}" "$@" || rc=$?
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
