#!/usr/bin/env bash
# Best effort, for `make venv` (usage: fetch_tcmalloc.sh VENV): Debian's tcmalloc (libtcmalloc-minimal4) into
# <venv>/lib, where --cpu_allocator auto finds it for CPU training (cpu/allocator.py; cpu/launch.py preloads it).
# Downloads the package, installs nothing system-wide, and leaves training on glibc's malloc (with heap trimming)
# when it cannot.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/base.sh"
if help_requested "$@"; then script_help; exit 0; fi
lib="${1:?usage: fetch_tcmalloc.sh VENV}/lib"
if compgen -G "$lib/libtcmalloc_minimal.so.4*" >/dev/null || ldconfig -p 2>/dev/null | grep -q libtcmalloc; then
  exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "note: no apt-get/dpkg: CPU training uses glibc's malloc (install tcmalloc or jemalloc for faster steps:" \
       "docs/performance.md, \"The heap\")"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if (cd "$tmp" && timeout 120 apt-get download -q libtcmalloc-minimal4 >/dev/null 2>&1) \
    && dpkg -x "$tmp"/libtcmalloc-minimal4_*.deb "$tmp/pkg" \
    && mkdir -p "$lib" && cp -P "$tmp"/pkg/usr/lib/*/libtcmalloc_minimal.so.4* "$lib"/; then
  echo "tcmalloc for CPU training: $(ls "$lib"/libtcmalloc_minimal.so.4)"
else
  echo "note: could not download libtcmalloc-minimal4: CPU training uses glibc's malloc (docs/performance.md," \
       "\"The heap\")"
fi
exit 0
