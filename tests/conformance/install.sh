#!/usr/bin/env bash
# Install Autobahn|Testsuite's `wstest` (and the Python 3 reference peer) into
# a cache dir. Idempotent: a stamp records the pins it was built from, so a
# second run with unchanged pins only checks that wstest still starts.
#
#   tests/conformance/install.sh [CACHE_DIR]
#
# CACHE_DIR defaults to $CONFORMANCE_VENV, else tests/conformance/.venv. It gets
#   py3/     Python 3 venv: virtualenv (to build py2/) + websockets (reference peer)
#   py2/     Python 2.7 virtualenv with wstest
# Env: PYTHON2 = path of a python2.7 (default: pyenv's 2.7.18), PYTHON3 = python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:-${CONFORMANCE_VENV:-$here/.venv}}
py3=${PYTHON3:-python3}

die() { echo "install.sh: $*" >&2; exit 1; }

# autobahntestsuite is Python 2 only (under Python 3 wstest dies at import).
# Debian 12 ships no Python 2; the machine image has one under pyenv.
find_python2() {
    if [[ -n ${PYTHON2:-} ]]; then echo "$PYTHON2"; return; fi
    local root
    root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    for p in "$root/versions/2.7.18/bin/python2.7" "$(command -v python2.7 || true)"; do
        if [[ -n $p && -x $p ]]; then echo "$p"; return; fi
    done
}
python2=$(find_python2)
[[ -n $python2 && -x $python2 ]] ||
    die "python2.7 not found (looked for \$PYTHON2, \$(pyenv root)/versions/2.7.18/bin/python2.7, python2.7 on PATH).
Autobahn|Testsuite needs CPython 2.7: install it with 'pyenv install 2.7.18' or set PYTHON2=/path/to/python2.7."
"$python2" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null ||
    die "$python2 is not a working Python 2.7"
command -v "$py3" >/dev/null || die "python3 not found (set PYTHON3)"

wstest=$cache/py2/bin/wstest
# What the environment was built from; any change rebuilds it.
want=$(cat "$here/requirements-py3.txt" "$here/requirements-wstest.txt" | sha256sum | cut -c1-16)
want="$want $python2"
stamp=$cache/.stamp

if [[ -f $stamp && $(cat "$stamp") == "$want" ]] && "$wstest" --help >/dev/null 2>&1 \
    && "$cache/py3/bin/python" -c 'import websockets' 2>/dev/null; then
    echo "wstest: $wstest (up to date)"
    exit 0
fi

echo "install.sh: building $cache (python2: $python2)" >&2
rm -rf "$cache/py2" "$cache/py3" "$stamp"
mkdir -p "$cache"

# Python 2 has no venv module: build a Python 3 venv holding the last
# virtualenv that can still create 2.7 environments, and let it make py2/.
"$py3" -m venv "$cache/py3" || die "'$py3 -m venv' failed (on Debian: apt-get install python3-venv)"
"$cache/py3/bin/pip" install -q -r "$here/requirements-py3.txt"
"$cache/py3/bin/virtualenv" -q -p "$python2" "$cache/py2"

# wsaccel has no 2.7 wheel and is compiled here (needs gcc; pyenv's Python
# ships its headers). --no-deps + the full pin list: nothing unpinned sneaks in.
command -v gcc >/dev/null || die "gcc is needed to build wsaccel (apt-get install gcc)"
"$cache/py2/bin/pip" install -q --no-deps -r "$here/requirements-wstest.txt"
"$wstest" --help >/dev/null 2>&1 || die "wstest was installed but does not start: try '$wstest --help'"

echo "$want" >"$stamp"
echo "wstest: $wstest"
