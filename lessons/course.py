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
it holds to `lesson.exercise`, which runs the exercise's check (lessons/checks/NN_name.py).
An unfinished answer prints what to do, a wrong one what is wrong; either way the lesson
goes on. The library's own version of a piece is shown only once the piece passes
(`lesson.reveal`). A passed answer is plugged into the lesson (`lesson.answer(id)`,
`as_function`) inside `with lesson.plugged(id):`, where the lesson compares it with the
library's piece on the same weights and input (`lesson.agrees`): a piece that raises or
differs there is caught, said, and counted wrong, and the lesson goes on with the library's.
With TINYEFFNET_SOLUTIONS=1 the reference answers of lessons/solutions/ replace the
learner's, and any check that fails stops the lesson with an error. `finish()` prints the
lesson's last line: how many exercises are passed, to do and wrong.
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

import checks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__)))
LESSONS = os.path.join(ROOT, "lessons")
FIGURES = os.environ.get("TINYEFFNET_FIGURES") or os.path.join(LESSONS, "figures")
SOLUTIONS = os.environ.get("TINYEFFNET_SOLUTIONS", "") == "1"


as_function = checks.as_function  # a learner's forward and backward plugged in as a Function


class ExerciseFailed(AssertionError):
    """A reference solution failed its check, or broke the lesson after it (only raised with
    TINYEFFNET_SOLUTIONS=1)."""


class Differs(AssertionError):
    """A learner's piece, plugged into the lesson, computed something else than the library's."""


def jax_on_the_cpu():
    """Pin JAX to the CPU, before it is imported: a lesson that has no use for an accelerator then
    never starts one's runtime (nor prints its start-up messages, e.g. when another process
    holds the TPU). An explicit JAX_PLATFORMS is kept; once JAX is imported it is too late."""
    if "jax" not in sys.modules:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")


def randn(backend, seed, shape, scale=1.0):
    """Normal samples on `backend`, drawn by the pure-Python backend's generator and copied over:
    eager jax.random calls compile one small XLA program per shape (fine in a long run, seconds in
    a short lesson)."""
    from backends import get_backend
    backend = get_backend(backend)
    return backend.from_flat(tinyeffnet.Tensor.normal(seed, shape, std=scale).to_flat(), tuple(shape))


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
        self.solutions = _solutions_module(number) if SOLUTIONS and checks.of_lesson(number) else None

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
        spec = checks.get(exercise_id)
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
        """The answer checked for an exercise when it passed (to plug into the lesson), else None;
        None again once it broke the lesson (`plugged`)."""
        return self.answers.get(exercise_id) if self.passed(exercise_id) else None

    def passed(self, exercise_id):
        return self.results.get(exercise_id) == "passed"

    def reveal(self, exercise_id, *texts):
        """Print `texts` (the library's version of the piece an exercise builds) once the exercise
        has passed; before, say where it will appear: the unsolved run never shows the answer."""
        if self.passed(exercise_id):
            print("\n\n".join(texts))
        else:
            print(f"(the library's version is shown here once exercise {exercise_id} passes)")

    @contextlib.contextmanager
    def plugged(self, *exercise_ids):
        """Where the lesson runs the learner's passed pieces. If one raises, or differs from the
        library's (`agrees`), the lesson says what broke, counts the exercise wrong, and goes on
        after the block (`answer` then gives None: the library's piece is used). An error while
        none of them is plugged in is the lesson's own, and is raised."""
        try:
            yield
        except Exception as e:  # the learner's piece broke: say what, and go on
            plugged = [i for i in exercise_ids if self.passed(i)]
            if not plugged:
                raise
            what = str(e) if isinstance(e, (Differs, checks.Wrong)) else f"it raised {type(e).__name__}: {e}"
            for exercise_id in plugged:
                self.results[exercise_id] = "wrong"
                print(f"exercise {exercise_id} ({checks.get(exercise_id).name}): passed its check, but broke the "
                      f"lesson here: {what}. It counts as wrong; the lesson goes on with the library's piece.")
            if self.solutions is not None:
                raise ExerciseFailed(f"the reference solution of exercise {', '.join(plugged)} broke the lesson: "
                                     f"{what}") from e

    @staticmethod
    def agrees(label, mine, theirs, rel=1e-9, abs_=1e-12):
        """The largest difference between `mine` and `theirs` (Tensors, backend arrays, nested lists
        or numbers), when every value agrees within rel and abs_; else raise `Differs`: inside
        `plugged`, that fails the piece."""
        if mine is None:
            raise Differs(f"{label}: yours is None")
        mine, theirs = checks.common.flat(mine), checks.common.flat(theirs)
        if len(mine) != len(theirs):
            raise Differs(f"{label}: yours has {len(mine)} values, the library's {len(theirs)}")
        worst = max((abs(a - b) for a, b in zip(mine, theirs)), default=0.0)
        if not all(checks.common.close(a, b, rel, abs_) for a, b in zip(mine, theirs)):
            raise Differs(f"{label}: yours differs from the library's by up to {worst:.2e}")
        return worst

    def finish(self):
        """The lesson's last line: how its exercises stand (passed, to do, wrong), and that its
        own checks hold (they ran just before). "passed" only when every exercise is; with
        TINYEFFNET_SOLUTIONS=1 every exercise must have run and passed."""
        expected = checks.of_lesson(self.number)
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
