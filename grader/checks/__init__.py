"""pytest modules that grade one experiment of one submission (see grader/grading.py)."""
