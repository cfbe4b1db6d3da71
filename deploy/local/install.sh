#!/usr/bin/env bash
# Installs the system packages Consentinel's local stack and tests need, and only those missing.
# Used by `.ci/run` and by the Makefile (`make venv`, `make demo`, `make test`, `make system`).
#
#   deploy/local/install.sh [venv|demo|test]     (default: test, everything)
#
#   venv  python3 with its venv module
#   demo  venv + Java and Maven (the stack fetches Kafka and the registry with them), Prometheus
#         and Alertmanager (the stack starts them when installed)
#   test  demo + Node.js/npm (CRD schema checks), Chromium (the HTML report tests), and the JDK
#         (javac) and Go 1.23+ that build examples/java-producer and examples/go-producer, and
#         kustomize (tests/deploy/test_k8s.py builds deploy/k8s with it): `kubectl kustomize` when
#         kubectl is installed, else the standalone kustomize built with Go from the module proxy
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
# Go 1.23+ for examples/go-producer: Debian's golang-go when new enough (trixie: 1.24), else
# golang-1.23-go from the release's backports (bookworm's golang-go is 1.19), linked as go.
go_new_enough() {
  command -v go >/dev/null 2>&1 || return 1
  local v
  v=$(go env GOVERSION 2>/dev/null) || return 1
  v=${v#go}
  [[ $(printf '%s\n' 1.23 "${v%%[!0-9.]*}" | sort -V | head -1) == 1.23 ]]
}
need_go=
need_kustomize=
KUSTOMIZE_MODULE=sigs.k8s.io/kustomize/kustomize/v5@v5.7.1
if [[ "$profile" == test ]]; then
  if ! command -v kustomize >/dev/null 2>&1 && ! command -v kubectl >/dev/null 2>&1; then
    missing+=(kustomize)
    need_kustomize=1
  fi
  want npm nodejs npm
  want chromium chromium
  want javac openjdk-17-jdk-headless
  if ! go_new_enough; then
    missing+=("go (1.23 or newer)")
    need_go=1
  fi
fi

if ((${#need[@]} == 0)) && [[ -z $need_go ]] && [[ -z $need_kustomize ]]; then
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
if ((${#need[@]} > 0)); then
  echo ">> apt-get install ${need[*]}"
  "${apt[@]}" install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${need[@]}" >/dev/null
  echo ">> system packages ($profile): installed ${need[*]}"
fi

install_go() {
  local candidate codename mirror
  candidate=$(apt-cache policy golang-go 2>/dev/null | awk '/Candidate:/ {print $2}')
  candidate=${candidate#*:}
  if [[ -n $candidate && $candidate != "(none)" &&
    $(printf '%s\n' 1.23 "${candidate%%[!0-9.]*}" | sort -V | head -1) == 1.23 ]]; then
    echo ">> apt-get install golang-go ($candidate)"
    "${apt[@]}" install -y -qq --no-install-recommends golang-go >/dev/null
    return
  fi
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  # the mirror this machine already uses for its release
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [[ -z $mirror ]]; then
    mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  if [[ -z $codename || -z $mirror ]]; then
    echo "!! Debian's golang-go is $candidate, older than 1.23, and no backports suite is known:" >&2
    echo "   install Go 1.23 or newer yourself (examples/go-producer needs it)" >&2
    exit 1
  fi
  echo ">> apt-get install -t $codename-backports golang-1.23-go (golang-go is $candidate)"
  echo "deb $mirror $codename-backports main" |
    "${sudo[@]}" tee /etc/apt/sources.list.d/consentinel-backports.list >/dev/null
  "${apt[@]}" update -qq
  "${apt[@]}" install -y -qq --no-install-recommends -t "$codename-backports" golang-1.23-go \
    >/dev/null
  "${sudo[@]}" ln -sf /usr/lib/go-1.23/bin/go /usr/local/bin/go
  "${sudo[@]}" ln -sf /usr/lib/go-1.23/bin/gofmt /usr/local/bin/gofmt
}
if [[ -n $need_go ]]; then
  install_go
  go_new_enough || {
    echo "!! go 1.23+ is still not on PATH after installing it" >&2
    exit 1
  }
  echo ">> system packages ($profile): installed $(go version)"
fi
if [[ -n $need_kustomize ]]; then
  echo ">> go install $KUSTOMIZE_MODULE (into /usr/local/bin)"
  "${sudo[@]}" env GOBIN=/usr/local/bin GOFLAGS=-buildvcs=false go install "$KUSTOMIZE_MODULE"
  echo ">> system packages ($profile): installed $(kustomize version)"
fi
