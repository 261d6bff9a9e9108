"""The status line ``source env.sh`` prints: Python, weights, pycnml backend.

Also prepares data on first use: resolving the weights writes the synthetic file
when no real weights are present.
"""
from __future__ import annotations

import platform
import sys


def status_line() -> str:
    from grader.kit.weights import resolve_weights
    weights = resolve_weights(generate=True)
    try:
        import pycnml
        backend = pycnml.backend_name()
    except Exception as exc:  # noqa: BLE001 - the status line must say why, not crash
        backend = f"unavailable ({type(exc).__name__}: {exc})"
    kind = weights.kind if weights.kind != "synthetic" else "SYNTHETIC (not real VGG19; see data/README.md)"
    return (f"AICS kit ready | Python {platform.python_version()} | weights: {kind}, sha256 {weights.short()} "
            f"| pycnml backend: {backend}")


def main() -> int:
    try:
        print(status_line())
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"env.sh: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
