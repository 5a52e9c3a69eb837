#!/usr/bin/env bash
# Create the project's virtualenv on a fresh Debian machine (or any machine with python3 >= 3.11).
# On Debian as root, installs python3-venv when the interpreter lacks the venv module.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: $python is missing or older than 3.11; install Python 3.11 (Debian bookworm: apt-get install python3)" >&2
  exit 1
fi
if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c 'import ensurepip' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  else
    echo "setup: $python has no venv module; install python3-venv" >&2
    exit 1
  fi
fi
# py-libp2p needs fastecdsa, which PyPI only has as source: it compiles against GMP.
if ! ls /usr/include/gmp.h /usr/include/*/gmp.h >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgmp-dev gcc
  else
    echo "setup: GMP headers are missing (fastecdsa needs them): install libgmp-dev and gcc" >&2
    exit 1
  fi
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# The load extra too (Locust, matplotlib: the load gate), so `make test` and `make load` have it.
"$venv/bin/pip" install -q --disable-pip-version-check -e '.[test,load]'
# The reference node's and peer's own pins, so their cores are unit-tested on the host.
"$venv/bin/pip" install -q --disable-pip-version-check -r images/pyruntime/requirements.txt
"$venv/bin/pip" install -q --disable-pip-version-check -r images/status-ref/requirements.txt
