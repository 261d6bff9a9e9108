"""Instructor tooling for the chapter-3 lab kit: reference set, checks, release, grading."""
