#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (written by
# `python -m grader gradescope`; do not edit, rebuild the zip instead).
#
#   1. find Python X.Y, the version the pins of requirements.txt were made for:
#      $AICS_GRADESCOPE_PYTHON when set (and nothing else), else pythonX.Y or python3 on
#      PATH, else apt-get (the distribution's archives, on Ubuntu also ppa:deadsnakes);
#   2. create the venv <source>/.venv and install exactly requirements.txt into it;
#   3. weights, the reference's outputs for the zip's seed, file modes (the container step);
#   4. the kit's status line as a last check.
#
# The autograder's root is $AICS_AUTOGRADER_ROOT (default /autograder); the zip is unpacked
# in <root>/source. Every failure says what failed and what to do, and exits non-zero.
set -uo pipefail
umask 022

ROOT="${AICS_AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source"
VENV="$SRC/.venv"

fail() {
    echo "setup.sh: FAILED: $*" >&2
    exit 1
}

[ -f "$SRC/python-version" ] && [ -f "$SRC/requirements.txt" ] \
    || fail "no python-version or requirements.txt in $SRC: unpack a zip made by \`python -m grader gradescope\` there (or set AICS_AUTOGRADER_ROOT)"
WANT="$(tr -d '[:space:]' < "$SRC/python-version")"
case "$WANT" in
    3.[0-9] | 3.[0-9][0-9]) ;;
    *) fail "$SRC/python-version holds '$WANT' instead of a version like 3.11; rebuild the zip" ;;
esac

# Whether the interpreter $1 is Python $WANT.
is_wanted() {
    "$1" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$WANT' else 1)" >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in "python$WANT" python3; do
        if command -v "$candidate" >/dev/null 2>&1 && is_wanted "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# Python $WANT from the distribution, else (Ubuntu) from the deadsnakes archive.
apt_python() {
    command -v apt-get >/dev/null 2>&1 || return 1
    export DEBIAN_FRONTEND=noninteractive
    echo "setup.sh: installing python$WANT with apt-get"
    apt-get update -qq || return 1
    apt-get install -y -qq "python$WANT" "python$WANT-venv" && return 0
    grep -qs '^ID=ubuntu' /etc/os-release || return 1
    echo "setup.sh: python$WANT is not in this image's archives; trying ppa:deadsnakes/ppa"
    apt-get install -y -qq software-properties-common gnupg \
        && add-apt-repository -y ppa:deadsnakes/ppa \
        && apt-get update -qq \
        && apt-get install -y -qq "python$WANT" "python$WANT-venv"
}

if [ -n "${AICS_GRADESCOPE_PYTHON:-}" ]; then
    # The interpreter named by the caller, or nothing: no apt-get then.
    is_wanted "$AICS_GRADESCOPE_PYTHON" || fail "AICS_GRADESCOPE_PYTHON=$AICS_GRADESCOPE_PYTHON is not Python $WANT"
    PY="$AICS_GRADESCOPE_PYTHON"
else
    PY="$(find_python)" || { apt_python && PY="$(find_python)"; } \
        || fail "no Python $WANT here and apt-get could not install it. The zip's numpy/scipy/numba pins were made with Python $WANT: choose a Gradescope base image whose python3 is $WANT, or rebuild the zip with the image's Python (a kit set up by \`AICS_PYTHON=python3.X source env.sh\`)"
fi
echo "setup.sh: Python $WANT at $PY"

rm -rf "$VENV"
if ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian and Ubuntu ship the venv module (ensurepip) separately.
    rm -rf "$VENV"
    if [ -z "${AICS_GRADESCOPE_PYTHON:-}" ] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$WANT-venv"
    fi
    "$PY" -m venv "$VENV" || fail "could not create the virtual environment $VENV with $PY (install python$WANT-venv)"
fi

echo "setup.sh: installing the pinned packages of requirements.txt"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --only-binary=:all: \
        -r "$SRC/requirements.txt" \
    || fail "pip could not install $SRC/requirements.txt (see above). The image needs access to PyPI, and these exact versions must have wheels for Python $WANT on $(uname -m); rebuild the zip on a machine like the image"

# The kit itself is imported from the unpacked zip, as an editable install would.
PURELIB="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    || fail "the new venv's Python does not start"
printf '%s\n' "$SRC" > "$PURELIB/aics-ch3-kit.pth" || fail "could not write $PURELIB/aics-ch3-kit.pth"

"$VENV/bin/python" -m grader.authoring.gradescope_build.container setup \
    || fail "the autograder could not be prepared (the reason is above)"
"$VENV/bin/python" -m grader.kit.status \
    || fail "the kit's final status check failed (the reason is above)"
echo "setup.sh: done"
