"""The documentation site builds from docs/ with warnings as errors, as docs/README.md says:
every page, every link between pages, the API reference from the docstrings, the Python API
page's examples executed, and the 17 lessons executed with their reference solutions and
rendered with their outputs and figures.

One build, in a fresh process, into a temporary folder. A lesson cell that fails, an
example that fails, a broken link or an unknown reference fails the build (-W); the checks
after it read the written pages: each lesson's page ends with the line its script prints
when every exercise passed, shows its figures, and the API page shows its examples ran.
"""
import importlib.util
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
LESSONS_DIR = os.path.join(ROOT, "lessons")
LESSONS = sorted(name for name in os.listdir(LESSONS_DIR) if re.fullmatch(r"\d\d_\w+\.py", name))
# A cold build on a 2-core machine takes a few minutes, most of it executing the lessons;
# the limit leaves room for a loaded CI machine without letting a hung kernel stall the suite.
TIMEOUT_S = 1500


def _missing_docs_packages():
    return [name for name in ("sphinx", "myst_nb", "sphinx_book_theme", "jupytext", "ipykernel")
            if importlib.util.find_spec(name) is None]


def _build(out):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # the lessons run as a learner runs them (lesson 14 sets its own device count)
    env["TINYEFFNET_CAPSTONE_MINUTES"] = "0.3"  # lesson 16's short path, as tests/test_lessons.py runs it
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
               "-d", str(out / "doctrees"), DOCS, str(out / "html")]
    start = time.time()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    seconds = time.time() - start
    report = done.stdout[done.stdout.rfind("tinyeffnet docs: built"):] if "tinyeffnet docs: built" in done.stdout else ""
    print(f"docs build: {seconds:.0f} s\n{report}")
    warnings = [line for line in (done.stdout + done.stderr).splitlines() if "WARNING" in line or "ERROR" in line]
    assert done.returncode == 0, (f"the docs build failed (exit {done.returncode}, {seconds:.0f} s): "
                                  f"{len(warnings)} warnings and errors\n" + "\n".join(warnings[:60])
                                  + f"\n--- stderr (tail) ---\n{done.stderr[-4000:]}")
    assert "tinyeffnet docs: built in" in report, "the build must say how long it took"
    return out / "html", report


def _page(html, name):
    path = html / name
    assert path.exists(), f"{name} was not written"
    return path.read_text(encoding="utf-8")


def _lesson_problems(html, report, name):
    """What is wrong with one lesson's page: [] when it shows the lesson executed with every
    exercise passed, its figures, and its run time in the build's report."""
    number = name[:2]
    page = _page(html, f"lessons/{name[:-3]}.html")
    with open(os.path.join(LESSONS_DIR, name), encoding="utf-8") as f:
        source = f.read()
    ids = sorted(set(re.findall(r'lesson\.exercise\("(\d\d\.\d+)"', source)))  # each exercise is checked by one call
    if ids:
        last = (f"lesson {number} passed: all {len(ids)} exercise{'s' if len(ids) != 1 else ''} "
                f"({len(ids)} passed, 0 to do, 0 wrong); its own checks hold")
    else:
        last = f"lesson {number} passed: no exercises; its own checks hold"
    problems = []
    if last not in page:
        problems.append(f"{name}: the page does not show its last line {last!r}")
    if "lesson.show(" in source and not re.search(r'<img [^>]*src="[^"]*_images/', page):
        problems.append(f"{name}: the lesson shows figures (lesson.show) but its page has no image")
    if not re.search(rf"^\s+\d+\.\d s  lessons/{name[:-3]}  ok$", report, re.M):
        problems.append(f"{name}: the build's report gives no run time for it")
    return problems


def test_the_site_builds_with_every_lesson_and_example_executed(tmp_path):
    """One build (a test of its own, so that pytest-xdist runs it once), then its pages."""
    missing = _missing_docs_packages()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install the docs packages (pip install -e '.[test]'): missing {', '.join(missing)}")
        pytest.skip(f"the docs packages are not installed ({', '.join(missing)}): pip install -e '.[docs]'")
    html, report = _build(tmp_path)

    problems = [problem for name in LESSONS for problem in _lesson_problems(html, report, name)]
    assert not problems, "\n".join(problems)

    assert "classify and predict agree on all 4 images" in _page(html, "python-api.html"), \
        "the Python API page's examples did not run to their end"
    for name in ("index", "getting-started", "training", "proxy", "table2", "weights", "scaling",
                 "benchmarks", "testing", "reference", "lessons/index"):
        _page(html, f"{name}.html")
    reference = _page(html, "reference.html")
    for name in ("create_model", "load", "classify"):
        assert f'id="tinyeffnet.{name}"' in reference, f"the API reference does not document tinyeffnet.{name}"
    table2 = _page(html, "table2.html")
    assert "Differences to base" in table2 and "table2-default.png" in table2, "Table II's report or chart is missing"
