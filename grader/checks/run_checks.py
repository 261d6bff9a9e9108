"""The one pytest test of the grader: run every declared check of one experiment.

Collected only when :func:`grader.checks.plugin.grade_experiment` passes this file to
pytest with a :class:`~grader.checks.plugin.GradingPlugin`; the plugin parametrizes
``check`` with the experiment's declared checks and provides the ``grading`` fixture.
"""


def test_check(check, grading):
    grading.run(check)
