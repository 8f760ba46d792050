# What every script of scripts/ and datasets/ sources first (it changes no folder): --help / -h, and the one Python
# lookup of the project.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/base.sh"    # then: help_requested "$@" && { script_help; exit 0; }
#   find_python                                        # sets and exports PYTHON, or stops with one line
#
# PYTHON: the interpreter given, else the repository's .venv/bin/python (`make venv` builds it), else python3.

BASE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# help_requested ARG...: true when the first argument asks for the usage
help_requested() {
    [[ "${1:-}" == -h || "${1:-}" == --help ]]
}

# script_help [FILE...]: the leading comment block of the running script (then of each FILE), without the '#'
script_help() {
    local file
    for file in "$0" "$@"; do
        awk 'NR == 1 && /^#!/ {next} /^#/ {sub(/^# ?/, ""); print; next} {exit}' "$file"
    done
}

# find_python: PYTHON, else .venv/bin/python, else python3; one error line unless it can import torch
find_python() {
    if [[ -z "${PYTHON:-}" ]]; then
        if [[ -x "$BASE_REPO/.venv/bin/python" ]]; then PYTHON="$BASE_REPO/.venv/bin/python"; else PYTHON=python3; fi
    fi
    export PYTHON
    if ! "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' 2>/dev/null; then
        echo "error: PYTHON=$PYTHON cannot import torch: run \`make venv\` (the scripts then use .venv/bin/python)" \
             "or set PYTHON to an interpreter with requirements.txt installed" >&2
        exit 2
    fi
}

# exec_or_print CMD...: become CMD, or under DRY_RUN=1 print it (one line, shell-quoted as printf %q writes it) and
# exit 0, as common.sh's scripts list their commands
exec_or_print() {
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        local line
        printf -v line '%q ' "$@"
        echo "${line% }"
        exit 0
    fi
    exec "$@"
}
