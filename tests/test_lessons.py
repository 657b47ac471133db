"""Every lesson in lessons/ runs as a script in a fresh process and passes its own checks.

A lesson proves what it teaches with asserts at its end, so exit code 0 is the test. Each
runs with the repository root as working directory, as `python lessons/NN_name.py` would.
"""
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LESSONS_DIR = os.path.join(ROOT, "lessons")
LESSONS = sorted(name for name in (os.listdir(LESSONS_DIR) if os.path.isdir(LESSONS_DIR) else [])
                 if re.fullmatch(r"\d\d_\w+\.py", name))
# Each lesson should take well under a minute on a 2-core CPU; the limit leaves room for a
# loaded CI machine without letting a hung lesson stall the suite.
TIMEOUT_S = 300


def test_at_least_fourteen_lessons():
    assert len(LESSONS) >= 14, f"expected lessons 00..13 in {LESSONS_DIR}, found {LESSONS}"
    assert [int(n[:2]) for n in LESSONS[:14]] == list(range(14)), LESSONS


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_format(name):
    """jupytext percent format: cells start with '# %%'; the lesson opens with a markdown title."""
    with open(os.path.join(LESSONS_DIR, name), encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("# %% [markdown]\n# # Lesson"), f"{name} must open with a markdown title cell"
    assert text.count("\n# %%\n") >= 2, f"{name} has too few code cells"
    assert "## Checks" in text and "assert " in text, f"{name} must end with checks"
    try:
        import jupytext
    except ImportError:
        return
    notebook = jupytext.reads(text, fmt="py:percent")
    kinds = {cell.cell_type for cell in notebook.cells}
    assert kinds == {"markdown", "code"}, kinds


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_runs(name):
    path = os.path.join(LESSONS_DIR, name)
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # lesson 12 sets its own device count in a subprocess
    start = time.time()
    done = subprocess.run([sys.executable, path], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    seconds = time.time() - start
    assert done.returncode == 0, (f"{name} failed (exit {done.returncode}, {seconds:.0f} s)\n"
                                  f"--- stderr (tail) ---\n{done.stderr[-4000:]}\n"
                                  f"--- stdout (tail) ---\n{done.stdout[-2000:]}")
    assert f"ok: lesson {name[:2]} checks passed" in done.stdout, f"{name} did not reach the end of its checks"
