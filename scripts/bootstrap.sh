#!/usr/bin/env bash
# Idempotent set-up of everything the project needs on a fresh Debian machine:
# MariaDB (local DB + tests), pipenv envs (app + checkov), the pinned cdktf CLI.
# Each step is skipped when already satisfied, so `make local` / `make test` stay fast on a warm machine.
set -euo pipefail
cd "$(dirname "$0")/.."

export PIPENV_VENV_IN_PROJECT=1 PIPENV_NOSPIN=1 PIPENV_YES=1 PIPENV_VERBOSITY=-1
PIPENV_VERSION=2026.10.3
step() { printf '\n==> %s\n' "$*"; }

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  step "installing mariadb-server (Debian package) for the local DB and the tests"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null
fi

if ! command -v terraform >/dev/null 2>&1; then
  echo "terraform is not on PATH: install Terraform 1.11 (see README 'Requirements')." >&2
  exit 1
fi

if ! python3 -m pipenv --version 2>/dev/null | grep -q "$PIPENV_VERSION"; then
  step "installing pipenv $PIPENV_VERSION"
  python3 -m pip install -q "pipenv==$PIPENV_VERSION"
fi

stamp() { sha256sum "$1" | cut -c1-16; }
sync_env() {  # $1 = project dir; re-sync only when its Pipfile.lock changed
  local dir=$1 marker="$1/.venv/.synced-lock"
  if [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$(stamp "$dir/Pipfile.lock")" ]; then
    step "pipenv sync in ${dir} (from Pipfile.lock)"
    (cd "$dir" && python3 -m pipenv sync ${2:-})
    stamp "$dir/Pipfile.lock" > "$marker"
  fi
}
sync_env . --dev
sync_env tools/checkov

if [ ! -x node_modules/.bin/cdktf ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "npm ci (pinned cdktf-cli)"
  npm ci --no-audit --no-fund --loglevel=error
fi
