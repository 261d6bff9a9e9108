"""Parent-side case definitions: what each check feeds a submission, per experiment.

A :class:`Case` is one call into a submission (one layer on one input, or one network
run). Visible cases use fixed seeds and ship with goldens in ``data/golden``; hidden
cases draw fresh inputs every run and take their goldens from the reference set.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Case:
    name: str                      # unique within an experiment; also the check's name
    kind: str                      # driver handler
    group: str                     # probe group (one sandboxed process per group)
    tier: int                      # 60, 80 or 100
    label: str                     # what a student reads: layer, parameters, shapes
    params: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)   # name -> ndarray
    hidden: bool = False
    weights_dependent: bool = False              # golden keyed by the weights' fingerprint
    needs_golden: bool = True                    # False: the check tests properties (loss falls, speed-up)


@dataclass(frozen=True)
class GroupSpec:
    name: str
    wall_seconds: float
    cpu_seconds: float


def he_normal(rng: np.random.Generator, shape, fan_in: int) -> np.ndarray:
    return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)


def spec_of(experiment: str):
    """The parent-side module of ``experiment``: its groups, cases and checks."""
    from grader.kit.paths import EXPERIMENTS
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"grader.experiments.{experiment}")
