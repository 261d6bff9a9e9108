"""A Gradescope autograder built from the kit (``python -m grader gradescope OUT.zip``).

Build side (the instructor's machine):

* :mod:`.build`       the command line and the zip writer;
* :mod:`.contents`    which kit files go in;
* :mod:`.pins`        the exact dependency versions installed here, as requirements.txt;
* :mod:`.manifest`    ``autograder.json``: experiments, hidden seed, weights, time limits;
* ``templates/``      ``setup.sh`` and ``run_autograder``, the two scripts Gradescope runs.

Container side (``python -m grader.authoring.gradescope_build.container setup|run``):

* :mod:`.container`   the two steps; :mod:`.warmup` the reference's outputs once, in setup;
* :mod:`.permissions` root-only reference, manifest and caches; :mod:`.upload` finding
  the graded folder in what a student uploaded; :mod:`.outcome` the results.json of every
  outcome, graded or not.
"""
from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from grader.authoring.gradescope_build.build import main as build_main
    return build_main(argv)
