"""``python -m grader similarity``: rank pairs of submissions by the code they share.

    python -m grader similarity SUBMISSIONS_DIR --out similarity/ [--experiments ...] [--top N]
                                [--common N] [--boilerplate DIR ...]

Submissions are found as ``python -m grader batch`` finds them (every sub-folder and
``*.zip``; zips extracted safely into a private folder removed at the end; a broken zip is
skipped with its reason). The students' ``exp_3_x_*/*.py`` files are compared with
copydetect's fingerprints, file by file, the kit's skeleton code left out; the result is
``pairs.csv`` (every pair, most similar first) and ``index.html`` (the top pairs with their
matching code highlighted side by side). It is evidence for a human to review, never a
verdict.

Modules: ``collect`` (finding and reading the files), ``scoring`` (fingerprints, the score
of a pair), ``table`` (the CSV), ``page`` (the HTML), ``command`` (the command line).
"""
from grader.authoring.similarity.command import main

__all__ = ["main"]
