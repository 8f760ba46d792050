#!/usr/bin/env bash
# Print the flags of recipes/NAME.txt on one line (comments dropped), for $(...) in bash scripts.
#
#   bash scripts/recipe.sh NAME        # NAME: a file of recipes/ without .txt (recipes/README.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/base.sh"
if help_requested "$@"; then script_help; exit 0; fi
file="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/recipes/${1:?usage: recipe.sh NAME}.txt"
if [[ ! -f "$file" ]]; then
    echo "error: no recipe $file (see recipes/README.md)" >&2
    exit 2
fi
sed -e 's/#.*//' "$file" | tr '\n' ' ' | tr -s ' '
echo
