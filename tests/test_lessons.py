"""The course in lessons/: every lesson runs and passes its own checks, both as a learner
finds it (exercises not done: they say what to do, the lesson goes on) and with the
reference solutions (every exercise check must pass); two lessons also run as notebooks;
and every exercise check rejects a wrong answer.

A lesson proves what it teaches with asserts at its end, so exit code 0 and its last line
are the test. Lessons run in a fresh process from a temporary working directory (they
find the repository through the installed package, not the working directory), with
their figures going to a temporary folder.
"""
import math
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
NOTEBOOKS = [("03_gradient_checking.py", False), ("09_mbconv.py", True)]  # (lesson, with solutions)

sys.path.insert(0, LESSONS_DIR)
import course  # noqa: E402  (lessons/course.py: the course's helpers)
import exercises  # noqa: E402


def _text(name):
    with open(os.path.join(LESSONS_DIR, name), encoding="utf-8") as f:
        return f.read()


def _solutions(number):
    return course._solutions_module(number)


def test_sixteen_lessons_from_00_to_15():
    assert [int(n[:2]) for n in LESSONS] == list(range(16)), LESSONS


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_format(name):
    """jupytext percent format: cells start with '# %%'; the lesson opens with a markdown title;
    every exercise has its marked cell and its check."""
    text = _text(name)
    assert text.startswith("# %% [markdown]\n# # Lesson"), f"{name} must open with a markdown title cell"
    assert text.count("\n# %%\n") >= 2, f"{name} has too few code cells"
    assert "## Checks" in text and "assert " in text, f"{name} must end with checks"
    assert not re.search(r"^\s*(import numpy|from numpy)", text, re.M), f"{name} imports numpy"
    assert "tinyeffnet.__file__" in text, f"{name} must find the repository through the installed package"
    ids = exercises.of_lesson(name[:2])
    assert bool(ids) == (name[:2] != "00"), f"every lesson from 01 on has exercises; {name} has {ids}"
    for exercise_id in ids:
        assert f"# EXERCISE {exercise_id}" in text, f"{name}: no cell marked EXERCISE {exercise_id}"
        assert f'lesson.exercise("{exercise_id}"' in text, f"{name}: exercise {exercise_id} is never checked"
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.reads(text, fmt="py:percent")
    kinds = {cell.cell_type for cell in notebook.cells}
    assert kinds == {"markdown", "code"}, kinds


def test_course_code_is_numpy_free():
    for folder in (LESSONS_DIR, os.path.join(LESSONS_DIR, "solutions")):
        for name in os.listdir(folder):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    assert not re.search(r"^\s*(import numpy|from numpy)", f.read(), re.M), name


def test_at_least_ten_figures():
    assert sum(_text(name).count("lesson.show(") for name in LESSONS) >= 10


def _run(name, solutions, figures):
    env = dict(os.environ, TINYEFFNET_FIGURES=str(figures))
    env.pop("XLA_FLAGS", None)  # lesson 13 sets its own device count in a subprocess
    env.pop("TINYEFFNET_SOLUTIONS", None)
    if solutions:
        env["TINYEFFNET_SOLUTIONS"] = "1"
    start = time.time()
    done = subprocess.run([sys.executable, os.path.join(LESSONS_DIR, name)], cwd=figures, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    return done, time.time() - start


@pytest.mark.parametrize("solutions", [False, True], ids=["as-found", "with-solutions"])
@pytest.mark.parametrize("name", LESSONS)
def test_lesson_runs(name, solutions, tmp_path):
    done, seconds = _run(name, solutions, tmp_path)
    number = name[:2]
    assert done.returncode == 0, (f"{name} failed (exit {done.returncode}, {seconds:.0f} s)\n"
                                  f"--- stderr (tail) ---\n{done.stderr[-4000:]}\n"
                                  f"--- stdout (tail) ---\n{done.stdout[-2000:]}")
    assert f"ok: lesson {number} checks passed" in done.stdout, f"{name} did not reach the end of its checks"
    ids = exercises.of_lesson(number)
    if ids:
        want = len(ids) if solutions else 0
        assert f"exercises of lesson {number}: {want} of {len(ids)} passed" in done.stdout, done.stdout[-2000:]
    for exercise_id in ids:
        word = "passed" if solutions else "to do in the cell marked"
        assert f"exercise {exercise_id} ({exercises.EXERCISES[exercise_id].name}): {word}" in done.stdout
    assert "it/s]" not in done.stdout + done.stderr and "step/s]" not in done.stdout + done.stderr, "tqdm noise"
    from PIL import Image
    figures = re.findall(r"^figure: (.+\.png)$", done.stdout, re.M)
    for path in figures:
        assert os.path.dirname(path) == str(tmp_path), f"{path} is not in $TINYEFFNET_FIGURES"
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 200, (path, image.size)
            assert image.convert("L").getextrema()[0] < 128, f"{path} is blank"
    assert len(figures) == _text(name).count("lesson.show("), "every lesson.show saves one figure"


@pytest.mark.parametrize("name,solutions", NOTEBOOKS, ids=[n for n, _ in NOTEBOOKS])
def test_lesson_runs_as_notebook(name, solutions, tmp_path, monkeypatch):
    """Converted with jupytext and executed by a Jupyter kernel from an unrelated folder:
    figures show inline (image/png outputs, none saved), tables render as Markdown."""
    if os.environ.get("CI"):
        import jupytext
        import nbclient
    else:
        jupytext = pytest.importorskip("jupytext")
        nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("TINYEFFNET_FIGURES", str(tmp_path / "figures"))
    monkeypatch.delenv("TINYEFFNET_SOLUTIONS", raising=False)
    if solutions:
        monkeypatch.setenv("TINYEFFNET_SOLUTIONS", "1")
    notebook = jupytext.read(os.path.join(LESSONS_DIR, name))
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    tables = [o for o in outputs if "text/markdown" in o.get("data", {})]
    assert f"ok: lesson {name[:2]} checks passed" in text, text[-2000:]
    assert len(images) == _text(name).count("lesson.show(") and images, "figures show inline"
    assert tables and all(o["data"]["text/markdown"].startswith("| ") for o in tables), "tables render as Markdown"
    assert "figure: " not in text and not os.path.exists(tmp_path / "figures"), "nothing saved in a notebook"
    ids = exercises.of_lesson(name[:2])
    assert f"exercises of lesson {name[:2]}: {len(ids) if solutions else 0} of {len(ids)} passed" in text


# ---------------------------------------------------------------------------- the checks
class _Todo:
    def __call__(self, *args, **kwargs):
        raise NotImplementedError


def _todo_function():
    from tinyeffnet import Function

    class Todo(Function):  # the lesson's placeholder, as the learner finds it
        def forward(self, x):
            raise NotImplementedError

        def backward(self, grad):
            raise NotImplementedError

    return Todo


def _wrong_tanh():
    from tinyeffnet import Function

    class ForgotTheChainRule(_solutions("02").Tanh):
        def backward(self, grad):
            return (grad,)

    assert issubclass(ForgotTheChainRule, Function)
    return ForgotTheChainRule


def _wrong_bn_backward(x, gamma, dy, eps):
    axes = (0, 1, 2)
    centred = x - x.mean(axis=axes, keepdims=True)
    invstd = ((centred * centred).mean(axis=axes, keepdims=True) + eps) ** -0.5
    return dy * gamma * invstd, (dy * centred * invstd).sum(axis=axes)  # dx as if mean and var were constants


def _wrong_grad_weight(x, dy, k, stride, padding):
    return _solutions("04").conv_grad_weight(x, dy, k, stride, ((0, 0), (0, 0)))  # forgets where padding starts


def _truncating_bfloat16(v):
    import struct
    bits = struct.unpack("<I", struct.pack("<f", v))[0]
    return struct.unpack("<f", struct.pack("<I", bits >> 16 << 16))[0]


def _wrong_seend(variant, base_count):
    from tinyeffnet.model.efficientnet import block_specs
    total = base_count
    for s in block_specs(variant):
        if s.se_position == "end":
            mid, r_mid, r_out = s.in_channels * s.expand_ratio, max(1, int(s.in_channels / 4)), max(1, s.out_channels // 4)
            total += -(2 * mid * r_mid + r_mid + mid) + 2 * s.out_channels * r_out + r_out + s.out_channels  # r from out
    return total


def _wrong_mbconv(spec):
    return _solutions("09").mbconv_parameters(spec) - 2 * spec.out_channels  # forgets the projection's BN


def _sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


WRONG = {  # one plausible mistake per exercise: its check must say it is wrong
    "01.1": lambda index, shape: sum(i * math.prod(shape[:k]) for k, i in enumerate(index)),  # column-major
    "01.2": lambda x, w, stride, groups: x[0] * x[1] * x[2] * w[0] * w[1] * w[2] * w[3],  # stride ignored
    "02.1": lambda a, b: (3 * _sigmoid(a * b + a * a) * (1 - _sigmoid(a * b + a * a)) * b,
                          3 * _sigmoid(a * b + a * a) * (1 - _sigmoid(a * b + a * a)) * a),  # misses a*a's path
    "02.2": _wrong_tanh,
    "03.1": lambda eps: math.e * eps / 2,  # the one-sided error
    "03.2": lambda f, x, index, eps=1e-5: (f(_nudge(x, index, eps)).item() - f(x).item()) / eps,  # one-sided
    "04.1": lambda n, k, s: (k // 2, k // 2),  # PyTorch's symmetric padding
    "04.2": _wrong_grad_weight,
    "05.1": lambda h, w, c_in, c_out, k, stride: (h * w * c_in * k * k + h * w * c_in * c_out,
                                                  k * k * c_in + c_in * c_out),  # stride ignored
    "06.1": _wrong_bn_backward,
    "07.1": lambda x: max(x, 0.0) + math.log(1 + math.exp(-abs(x))),  # no overflow, but log instead of log1p
    "07.2": lambda x: _sigmoid(x),  # forgets the x s (1 - s) term
    "08.1": lambda channels, block_in: 2 * channels * max(1, channels // 4) + max(1, channels // 4) + channels,
    "08.2": lambda h, w, c, r: 2 * c * r,  # MACs only
    "09.1": _wrong_mbconv,
    "10.1": _wrong_seend,
    "10.2": lambda kernel, c_in, c_out, depthwise: math.sqrt(6 / (kernel * kernel * (c_in + c_out))),  # plain fans
    "11.1": lambda k, s: -((1 - s) * math.log(1 - s) + (k - 1) * (s / k) * math.log(s / k)),  # label gets 1 - s
    "11.2": lambda param, grad, velocity, lr, momentum, wd: (
        param - lr * (grad + wd * param + momentum * velocity), grad + wd * param + momentum * velocity),  # heavy ball
    "12.1": lambda x, slope: x.relu(),
    "13.1": _truncating_bfloat16,
    "14.1": lambda v, b: None if min(len(v), len(b)) < 2 else abs(sum(v) / len(v) - sum(b) / len(b)) > 2 * math.sqrt(
        _pvar(v) + _pvar(b)),  # population instead of sample standard deviations
    "15.1": "nose@all",  # one of the paper's seven
    "15.2": lambda base_count: base_count,
}


def _nudge(x, index, eps):
    from tinyeffnet import Tensor
    values = x.to_flat()
    values[index] += eps
    return Tensor(values).reshape(*x.shape)


def _pvar(values):
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def _context(exercise_id):
    return {"variant": _solutions("15").my_variant} if exercise_id == "15.2" else {}


def test_every_exercise_has_a_solution_and_a_wrong_answer():
    assert sorted(WRONG) == sorted(exercises.EXERCISES)


@pytest.mark.parametrize("exercise_id", sorted(exercises.EXERCISES))
def test_exercise_check_passes_the_solution_and_rejects_a_wrong_answer(exercise_id):
    if exercise_id.startswith(("12.", "13.")):
        pytest.importorskip("jax")
    spec = exercises.EXERCISES[exercise_id]
    solution = getattr(_solutions(exercise_id[:2]), spec.name)
    assert spec.run(solution, **_context(exercise_id))[0] == "passed"
    wrong = WRONG[exercise_id]
    wrong = wrong() if wrong in (_wrong_tanh,) else wrong
    status, message = spec.run(wrong, **_context(exercise_id))
    assert status == "wrong" and message, (status, message)
    placeholder = {"my_variant": None, "Tanh": _todo_function()}.get(spec.name, _Todo())
    assert spec.run(placeholder, **_context(exercise_id)) == ("todo", spec.task)


def test_unfinished_and_crashing_answers():
    spec = exercises.EXERCISES["01.1"]
    assert spec.run(lambda index, shape: None)[0] == "todo", "a function left returning None is not written yet"
    assert spec.run(...)[0] == "todo"
    status, message = spec.run(lambda index, shape: index[5])
    assert status == "wrong" and message.startswith("your code raised IndexError"), message
    assert exercises.EXERCISES["15.2"].run(lambda base: base)[0] == "todo", "15.2 waits for a variant (15.1)"


def test_with_solutions_a_failing_check_stops_the_lesson(monkeypatch, capsys):
    class Broken:
        central_error = staticmethod(lambda eps: 0.0)
        numeric_grad = staticmethod(_solutions("03").numeric_grad)

    monkeypatch.setattr(course, "SOLUTIONS", True)
    monkeypatch.setattr(course, "_solutions_module", lambda number: Broken)
    lesson = course.Lesson("03")
    with pytest.raises(course.ExerciseFailed, match="03.1"):
        lesson.exercise("03.1", None)
    lesson.exercise("03.2", None)
    with pytest.raises(course.ExerciseFailed, match="03.1"):
        lesson.finish()
    assert "exercise 03.2 (numeric_grad): passed" in capsys.readouterr().out


def test_without_solutions_the_lesson_goes_on(monkeypatch, capsys):
    monkeypatch.setattr(course, "SOLUTIONS", False)
    lesson = course.Lesson("03")
    lesson.exercise("03.1", lambda eps: 1.0)  # wrong: reported, not raised
    lesson.exercise("03.2", _Todo())
    lesson.finish()
    out = capsys.readouterr().out
    assert "exercise 03.1 (central_error): not right yet: at eps 0.1 the measured error" in out
    assert "exercise 03.2 (numeric_grad): to do in the cell marked EXERCISE 03.2" in out
    assert "exercises of lesson 03: 0 of 2 passed; still open: 03.1, 03.2" in out


def test_markdown_table_and_source_cuts():
    assert course.markdown_table(["a", "b"], [("x", "1,234"), ("y", 5)]) == "| a | b |\n|---|---:|\n| x | 1,234 |\n| y | 5 |"
    from tinyeffnet.model.efficientnet import round_filters
    text = course.source(round_filters, cut=[("f = filters * width", "new += 8")])
    assert text.splitlines() == ["def round_filters(filters, width):", "    if width == 1.0:", "        return filters",
                                 "    ...", "    return int(new)"], text
