# Set up the chapter-3 lab kit in this shell:   source env.sh
#
# Idempotent: the first run creates .venv, installs the kit and writes the synthetic
# VGG19 weights (about a minute); later runs only activate and print the status line.
# Nothing here exits your shell on failure; it prints what went wrong and returns 1.

_aics_setup() {
    local root py stamp want
    root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
    py="${AICS_PYTHON:-python3}"
    if ! command -v "$py" >/dev/null 2>&1; then
        echo "env.sh: $py not found; install Python 3.10 or newer (or set AICS_PYTHON)" >&2
        return 1
    fi
    if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
        echo "env.sh: $("$py" --version 2>&1) is too old; the kit needs Python 3.10 or newer" >&2
        return 1
    fi
    if [ ! -x "$root/.venv/bin/python" ]; then
        echo "env.sh: creating $root/.venv"
        "$py" -m venv "$root/.venv" || { echo "env.sh: could not create the virtual environment" >&2; return 1; }
    fi
    # Reinstall only when the dependency list changed.
    stamp="$root/.venv/.aics-installed"
    want="$(cat "$root/pyproject.toml" | cksum)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "env.sh: installing the kit and its dependencies (numpy, scipy, pillow, numba, matplotlib, pytest)"
        "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root" \
            || { echo "env.sh: pip install failed; see the messages above" >&2; return 1; }
        echo "$want" > "$stamp"
    fi
    # shellcheck disable=SC1091
    . "$root/.venv/bin/activate"
    export AICS_KIT_ROOT="$root"
    case ":${PYTHONPATH:-}:" in
        *":$root:"*) ;;
        *) export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" ;;
    esac
    # Prepare data (writes the synthetic weights once) and print the status line.
    python -m grader.kit.status || { echo "env.sh: weights are not ready (see above)" >&2; return 1; }
}

_aics_setup
_aics_rc=$?
unset -f _aics_setup
# shellcheck disable=SC2317
return $_aics_rc 2>/dev/null || exit $_aics_rc
