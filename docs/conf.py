"""Sphinx configuration of tinyeffnet's documentation site (docs/README.md says how to build
it and why it is built this way).

What is the project's own here:

- the course is rendered from the lesson scripts themselves: before Sphinx looks for its
  sources, the scripts of lessons/ are copied into docs/lessons/ (git-ignored; a copy is
  rewritten only when its lesson changed, so an unchanged lesson keeps its mtime and an
  incremental rebuild does not read it again) and read by jupytext as notebooks;
- every notebook Sphinx reads (the lessons, the Python API page; all of them in a fresh
  build) is executed, the lessons with their reference solutions on, against this checkout
  of the package: a cell that fails is a warning, and the build runs with warnings as errors;
- the docstrings are plain text written for help(), shown as written where reST would
  misread them (_plain_docstring);
- the build ends by printing how long it took and how long each notebook ran.
"""
import os
import re
import shutil
import sys
import time

_STARTED = time.monotonic()
_STARTED_AT = time.time()

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
LESSONS = os.path.join(ROOT, "lessons")
STAGED_LESSONS = os.path.join(DOCS, "lessons")

# autodoc documents this checkout, and the notebooks' kernels (and the commands they start)
# import it too, whatever copy of the package is installed elsewhere
sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

# The lessons run with the reference solutions of lessons/solutions/: every exercise must pass
# (a failing one raises), so the rendered pages show the lessons working. The capstone's
# comparison is time-boxed to 10 minutes by default; the site renders its short pure-Python
# path unless the builder asks for more (the lesson says what each path means).
os.environ["TINYEFFNET_SOLUTIONS"] = "1"
os.environ.setdefault("TINYEFFNET_CAPSTONE_MINUTES", "0.3")

# A jupytext header naming the kernel: a lesson script names none, and nbclient needs one.
_KERNEL_HEADER = """\
# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

"""


def _lesson_scripts():
    return sorted(name for name in os.listdir(LESSONS)
                  if len(name) > 3 and name[:2].isdigit() and name[2] == "_" and name.endswith(".py"))


def stage_lessons():
    """docs/lessons/NN_name.py for every lessons/NN_name.py, each the lesson with a kernel
    header; stale copies removed. Returns the staged names."""
    names = _lesson_scripts()
    for name in os.listdir(STAGED_LESSONS):
        if name.endswith(".py") and name not in names:
            os.remove(os.path.join(STAGED_LESSONS, name))
    for name in names:
        source = os.path.join(LESSONS, name)
        target = os.path.join(STAGED_LESSONS, name)
        with open(source, encoding="utf-8") as f:
            text = _KERNEL_HEADER + f.read()
        current = None
        if os.path.exists(target):
            with open(target, encoding="utf-8") as f:
                current = f.read()
        if current != text:
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
            mtime = os.stat(source).st_mtime
            os.utime(target, (mtime, mtime))
    return names


stage_lessons()

# autosummary writes one page per module into docs/_autosummary/ (git-ignored) and never
# removes one: start from an empty folder, so a renamed module leaves no stale page behind.
shutil.rmtree(os.path.join(DOCS, "_autosummary"), ignore_errors=True)

project = "tinyeffnet"
author = "the tinyeffnet authors"
copyright = "2026, the tinyeffnet authors"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
]

exclude_patterns = [
    "_build",
    "README.md",  # how to build the site, for the repository's readers
    "conf.py",
    "table2-default",  # the Table II run records: pages include their report
    "table2-32x32",
    "**/__pycache__",
    "**/.ipynb_checkpoints",
    "_templates",
]

# MyST: Markdown pages, headings linkable as page.md#heading
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# myst-nb: lesson scripts are jupytext percent-format notebooks
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nb_execution_mode = "force"  # never outputs from a cache: what the pages show is what the code does now
nb_execution_in_temp = True  # a lesson's runs and files go to a temporary folder, not into docs/
nb_execution_timeout = 900  # per cell
nb_execution_raise_on_error = False  # a failing notebook is a warning (an error under -W), and --keep-going reports them all
nb_execution_show_tb = True
nb_merge_streams = True

# autodoc: the docstrings are prose with `code` in single backticks
default_role = "code"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": False}  # members: where a page asks (the module template, the top)
autodoc_typehints = "none"
autosummary_generate = True  # docs/_autosummary/ (git-ignored): one page per module, found by walking the packages
templates_path = ["_templates"]

html_theme = "sphinx_book_theme"
html_title = "tinyeffnet"
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
html_static_path = []
html_last_updated_fmt = None


# The docstrings are plain text written for help(): prose paragraphs with `code` in single
# backticks, and aligned tables, file layouts, lists and code indented under them. reST would
# read the aligned parts as block quotes, definition lists and emphasis, so each paragraph
# holding such lines is shown as written (a literal block), and in prose paragraphs the
# characters reST gives a meaning to are escaped.
_LAYOUT_LINE = re.compile(r"^(\s|[-*+] |\d+[.)] |[a-z][.)] |\.\. |>>>)|^[-=~^]{3,}\s*$|\S {2,}\S")
_CODE_SPAN = re.compile(r"(``.+?``|`[^`]+`)")


def _escape_prose(line):
    parts = _CODE_SPAN.split(line)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a code span: keep it, and keep reST from running it into the words beside it
            if out and out[-1] and (out[-1][-1].isalnum() or out[-1][-1] in "_"):
                out.append("\\ ")
            out.append(part)
            following = parts[i + 1] if i + 1 < len(parts) else ""
            if following and (following[0].isalnum() or following[0] in "_"):
                out.append("\\ ")
        else:
            part = part.replace("\\", "\\\\")
            part = re.sub(r"([*|])", r"\\\1", part)
            part = re.sub(r"(\w)_(?=\W|$)", r"\1\\_", part)
            part = re.sub(r"(^|\W)_", r"\1\\_", part)
            out.append(part)
    return "".join(out)


def _plain_docstring(app, what, name, obj, options, lines):
    paragraphs, current = [], []
    for line in lines + [""]:
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append(current)
            current = []
    rendered = []
    for paragraph in paragraphs:
        if any(_LAYOUT_LINE.search(line) for line in paragraph):
            rendered += ["::", ""] + ["    " + line for line in paragraph] + [""]
        else:
            rendered += [_escape_prose(line) for line in paragraph] + [""]
    lines[:] = rendered


def _report_build_time(app, exception):
    """Print how long the build took and how long each notebook executed by it ran."""
    elapsed = time.monotonic() - _STARTED
    metadata = getattr(app.env, "nb_metadata", {}) if app.env is not None else {}
    runs = {docname: data for docname, data in ((d, metadata[d].get("exec_data")) for d in sorted(metadata))
            if data and data.get("mtime", 0) >= _STARTED_AT}  # a rebuild re-executes only what changed
    rows = [f"  {data['runtime']:8.1f} s  {docname}  "
            + ("ok" if data.get("succeeded") else f"FAILED ({data.get('error')})") for docname, data in runs.items()]
    executed = sum(data["runtime"] for data in runs.values())
    lines = [f"tinyeffnet docs: built in {elapsed:.1f} s"
             + (" (stopped by an error)" if exception else "")
             + (f"; {len(rows)} notebooks executed in {executed:.1f} s:" if rows else "; no notebook executed")]
    print("\n".join(lines + rows), flush=True)


def setup(app):
    # The notebooks' JAX processes (kernels, and the commands they start) share compiled
    # programs through one persistent cache beside the output: a program compiled twice in a
    # build (the Python API page's predict compiles what classify did) or again in the next
    # build is read back. Results are the same; only compile time is saved.
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(app.outdir), ".jax-cache"))
    app.connect("autodoc-process-docstring", _plain_docstring)
    app.connect("build-finished", _report_build_time)
