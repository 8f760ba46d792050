#!/usr/bin/env bash
# Start a visdom server in the background (offline-safe launcher) unless one already answers.
#
#   scripts/visdom_server.sh [--port 8097] [--hostname 127.0.0.1] [--env_path DIR]
#
# Writes <run dir>/visdom_<port>.pid and .log; the run dir is $VISDOM_RUN_DIR or ~/.visdom.
# Python: scripts/base.sh's lookup ($PYTHON, else the repository's .venv, else python3). Stop it with: kill "$(cat <pid file>)"
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/base.sh"
if help_requested "$@"; then script_help; exit 0; fi
repo_root=$BASE_REPO
find_python
python=$PYTHON

port=8097
hostname=127.0.0.1
args=("$@")
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --hostname) hostname="$2"; shift 2 ;;
    --env_path) shift 2 ;;
    *) echo "unknown argument: $1 (valid: --port, --hostname, --env_path)" >&2; exit 2 ;;
  esac
done
url_host="$hostname"
[[ "$hostname" == 0.0.0.0 ]] && url_host=127.0.0.1
url="http://${url_host}:${port}"

cd "$repo_root"
if "$python" -m util.visdom_server --check --port "$port" --hostname "$hostname"; then
  echo "visdom server already running at $url"
  exit 0
fi

run_dir="${VISDOM_RUN_DIR:-$HOME/.visdom}"
mkdir -p "$run_dir"
pid_file="$run_dir/visdom_${port}.pid"
log_file="$run_dir/visdom_${port}.log"
nohup "$python" -m util.visdom_server "${args[@]}" >>"$log_file" 2>&1 &
echo $! >"$pid_file"

deadline=$((SECONDS + 30))
while ((SECONDS < deadline)); do
  if "$python" -m util.visdom_server --check --port "$port" --hostname "$hostname"; then
    echo "visdom server running at $url (pid $(cat "$pid_file"), log $log_file)"
    exit 0
  fi
  if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "visdom server exited; see $log_file:" >&2
    tail -n 20 "$log_file" >&2
    exit 1
  fi
  sleep 0.3
done
echo "visdom server did not answer at $url within 30 s; see $log_file" >&2
exit 1
