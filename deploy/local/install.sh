#!/usr/bin/env bash
# Installs the system packages Consentinel's local stack and tests need, and only those missing.
# Used by `.ci/run` and by the Makefile (`make venv`, `make demo`, `make test`, `make system`).
#
#   deploy/local/install.sh [venv|demo|test]     (default: test, everything)
#
#   venv  python3 with its venv module
#   demo  venv + Java and Maven (the stack fetches Kafka and the registry with them), Prometheus
#         and Alertmanager (the stack starts them when installed)
#   test  demo + Node.js/npm (CRD schema checks) and Chromium (the HTML report tests)
#
# Idempotent and fast when everything is present: each tool is checked with `command -v`, and
# apt-get runs only when something is missing (Debian/Ubuntu, as root or through sudo). Debian's
# prometheus packages would start their own services; a temporary policy-rc.d stops that, since
# the stack runs its own. Set CONSENTINEL_SKIP_SYSTEM_INSTALL=1 to skip this step entirely.
set -euo pipefail

profile="${1:-test}"
case "$profile" in
  venv | demo | test) ;;
  *) echo "usage: $0 [venv|demo|test]" >&2; exit 2 ;;
esac
if [[ "${CONSENTINEL_SKIP_SYSTEM_INSTALL:-}" == 1 ]]; then
  echo ">> system packages: skipped (CONSENTINEL_SKIP_SYSTEM_INSTALL=1)"
  exit 0
fi

need=()    # Debian packages to install
missing=() # what is missing, for the messages
want() { # want TOOL PACKAGE...: the packages if TOOL is not on PATH
  local tool=$1
  shift
  if ! command -v "$tool" >/dev/null 2>&1; then
    missing+=("$tool")
    need+=("$@")
  fi
}

if ! command -v python3 >/dev/null 2>&1; then
  missing+=(python3)
  need+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=("python3 venv module")
  need+=(python3-venv)
fi
if [[ "$profile" != venv ]]; then
  want java openjdk-17-jre-headless
  want mvn maven
  want promtool prometheus
  want prometheus-alertmanager prometheus-alertmanager
fi
if [[ "$profile" == test ]]; then
  want npm nodejs npm
  want chromium chromium
fi

if ((${#need[@]} == 0)); then
  echo ">> system packages ($profile): all present"
  exit 0
fi
echo ">> system packages ($profile): missing ${missing[*]}"

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "!! not root and no sudo: install these Debian packages yourself: ${need[*]}" >&2
    echo "   (or set CONSENTINEL_SKIP_SYSTEM_INSTALL=1 to go on without them)" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "!! no apt-get on this machine: install ${missing[*]} with its package manager" >&2
  echo "   (Debian package names: ${need[*]}; or set CONSENTINEL_SKIP_SYSTEM_INSTALL=1)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
# Keep Debian's maintainer scripts from starting services (prometheus, alertmanager): the stack
# runs its own. Only a policy-rc.d this script created is removed again.
policy=/usr/sbin/policy-rc.d
created_policy=
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod +x "$policy"
  created_policy=1
fi
cleanup() { if [[ -n $created_policy ]]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

echo ">> apt-get update"
"${apt[@]}" update -qq
echo ">> apt-get install ${need[*]}"
"${apt[@]}" install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${need[@]}" >/dev/null
echo ">> system packages ($profile): installed ${need[*]}"
