"""What the lessons share that is not tinyeffnet: where the repository is, showing figures
and tables, and running the exercises' checks.

Every lesson starts with

    import tinyeffnet                       # installed with `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(tinyeffnet.__file__)), "lessons"))
    import course
    lesson = course.Lesson("04")

and then calls `lesson.show(image, name)`, `lesson.table(header, rows)` and
`lesson.exercise(id, answer)`. As a script a figure is saved to $TINYEFFNET_FIGURES
(default lessons/figures/) and its path printed; in a notebook it is shown inline, and a
table renders as Markdown.

Exercises: the lesson gives a marked cell (a function or class to fill in) and passes what
it holds to `lesson.exercise`, which runs the exercise's check (lessons/exercises.py). An
unfinished answer prints what to do, a wrong one what is wrong; either way the lesson goes
on. A passed answer is plugged into the lesson (`lesson.answer(id)`, `as_function`): the
lesson's own checks then run on the learner's piece. With TINYEFFNET_SOLUTIONS=1 the
reference answers of lessons/solutions/ replace the learner's, and any check that fails
stops the lesson with an error. `finish()` prints the lesson's last line: how many
exercises are passed, to do and wrong.
"""
import ast
import contextlib
import importlib.util
import inspect
import io
import os
import shutil
import sys
import textwrap

import tinyeffnet

import exercises

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__)))
LESSONS = os.path.join(ROOT, "lessons")
FIGURES = os.environ.get("TINYEFFNET_FIGURES") or os.path.join(LESSONS, "figures")
SOLUTIONS = os.environ.get("TINYEFFNET_SOLUTIONS", "") == "1"


as_function = exercises.as_function  # a learner's forward and backward plugged in as a Function


class ExerciseFailed(AssertionError):
    """A reference solution failed its check (only raised with TINYEFFNET_SOLUTIONS=1)."""


def in_notebook():
    """True inside a Jupyter kernel, whatever its front end (JupyterLab, classic notebook, VS Code,
    Colab, qtconsole): there a figure is sent as an image/png display and a table as Markdown,
    which every such front end can show. A terminal IPython has no kernel: it gets files and text."""
    ipython = sys.modules.get("IPython")  # never imported here: only where IPython already runs
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    if shell is None:
        return False
    return getattr(shell, "kernel", None) is not None or "IPKernelApp" in getattr(shell, "config", {})


def source(obj, docstring=False, cut=()):
    """The source of a library function or class, cut to the lines that teach: without its
    docstring (unless asked), and each (first, last) pair of `cut` replaced by one "..."
    line, from the first line containing `first` to the next line containing `last`."""
    lines = textwrap.dedent(inspect.getsource(obj)).splitlines()
    if not docstring:
        node = ast.parse("\n".join(lines)).body[0]
        doc = node.body[0] if node.body and isinstance(node.body[0], ast.Expr) and \
            isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str) else None
        if doc is not None:
            del lines[doc.lineno - 1:doc.end_lineno]
    for first, last in cut:
        start = next(i for i, line in enumerate(lines) if first in line)
        stop = next(i for i in range(start, len(lines)) if last in lines[i])
        indent = lines[start][:len(lines[start]) - len(lines[start].lstrip())]
        lines[start:stop + 1] = [f"{indent}..."]
    return "\n".join(lines)


def _is_number(cell):
    try:
        float(str(cell).replace(",", "").replace("%", "").strip())
        return True
    except ValueError:
        return False


def markdown_table(header, rows):
    """A Markdown table; columns whose cells are all numbers are right-aligned."""
    def numeric(col):
        return all(_is_number(r[col]) for r in rows)
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "|" + "|".join("---:" if numeric(i) else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def _solutions_module(number):
    folder = os.path.join(LESSONS, "solutions")
    names = [n for n in os.listdir(folder) if n.startswith(number + "_") and n.endswith(".py")]
    if len(names) != 1:
        raise ExerciseFailed(f"TINYEFFNET_SOLUTIONS=1: expected one lessons/solutions/{number}_*.py, found {names}")
    spec = importlib.util.spec_from_file_location(f"solutions_{number}", os.path.join(folder, names[0]))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Lesson:
    """One lesson's figures, tables and exercise results."""

    def __init__(self, number):
        self.number = number
        self.results = {}  # exercise id -> "passed" | "todo" | "wrong"
        self.answers = {}
        self.figures = []
        self.solutions = _solutions_module(number) if SOLUTIONS and exercises.of_lesson(number) else None

    # ------------------------------------------------------------ figures and tables
    def show(self, figure, name):
        """Show a PIL image (or a PNG file) inline in a notebook; as a script save it to
        FIGURES/<lesson>_<name>.png and print the path. Returns the path (None in a notebook)."""
        if in_notebook():
            from IPython.display import Image, display
            if isinstance(figure, (str, os.PathLike)):
                with open(figure, "rb") as f:
                    data = f.read()
            else:
                buffer = io.BytesIO()
                figure.save(buffer, format="PNG")
                data = buffer.getvalue()
            display(Image(data=data))
            return None
        os.makedirs(FIGURES, exist_ok=True)
        path = os.path.join(FIGURES, f"{self.number}_{name}.png")
        if isinstance(figure, (str, os.PathLike)):
            shutil.copyfile(figure, path)
        else:
            figure.save(path, format="PNG")
        self.figures.append(path)
        print(f"figure: {path}")
        return path

    def markdown(self, text):
        """Markdown text (a table): rendered in a notebook, printed as a script."""
        if in_notebook():
            from IPython.display import Markdown, display
            display(Markdown(text))
        else:
            print(text)
        return text

    def table(self, header, rows):
        return self.markdown(markdown_table(header, rows))

    # ------------------------------------------------------------ exercises
    def exercise(self, exercise_id, answer, **context):
        """Check the learner's answer (or, with TINYEFFNET_SOLUTIONS=1, the reference one) and
        say how it went. Returns nothing (a notebook would echo it); `answer(id)` gives the
        answer that was checked, for a lesson to plug in."""
        spec = exercises.EXERCISES[exercise_id]
        if self.solutions is not None:
            answer = getattr(self.solutions, spec.name)
        status, message = spec.run(answer, **context)
        self.results[exercise_id] = status
        word = {"passed": "passed", "todo": f"to do in the cell marked EXERCISE {exercise_id}",
                "wrong": "not right yet"}[status]
        print(f"exercise {exercise_id} ({spec.name}): {word}" + (f": {message}" if message else ""))
        if self.solutions is not None and status != "passed":
            raise ExerciseFailed(f"the reference solution of exercise {exercise_id} fails its check: {message}")
        self.answers[exercise_id] = answer

    def answer(self, exercise_id):
        """The answer checked for an exercise when it passed (to plug into the lesson), else None."""
        return self.answers.get(exercise_id) if self.passed(exercise_id) else None

    def passed(self, exercise_id):
        return self.results.get(exercise_id) == "passed"

    def finish(self):
        """The lesson's last line: how its exercises stand (passed, to do, wrong), and that its
        own checks hold (they ran just before). "passed" only when every exercise is; with
        TINYEFFNET_SOLUTIONS=1 every exercise must have run and passed."""
        expected = exercises.of_lesson(self.number)
        status = {s: [i for i in expected if self.results.get(i, "todo") == s] for s in ("passed", "todo", "wrong")}
        if self.solutions is not None and len(status["passed"]) != len(expected):
            open_ = [i for i in expected if i not in status["passed"]]
            raise ExerciseFailed(f"with the reference solutions, exercises {', '.join(open_)} did not pass")
        counts = f"{len(status['passed'])} passed, {len(status['todo'])} to do, {len(status['wrong'])} wrong"
        if len(status["passed"]) == len(expected):
            line = f"lesson {self.number} passed: " + (f"all {len(expected)} exercise{'s' if len(expected) != 1 else ''} ({counts})" if expected
                                                      else "no exercises") + "; its own checks hold"
        else:
            which = "; ".join(f"{s.replace('todo', 'to do')}: {', '.join(status[s])}" for s in ("todo", "wrong")
                              if status[s])
            line = f"lesson {self.number} not passed yet: exercises {counts} of {len(expected)} ({which}); " \
                   "its own checks hold"
        print(line)


@contextlib.contextmanager
def stderr_to(path):
    """Send this process's standard error, and its child processes', to a file for a while
    (progress bars of training runs started as subprocesses); restored afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as f:
            os.dup2(f.fileno(), 2)
        yield path
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
