"""The course in lessons/: every lesson runs and passes its own checks, both as a learner
finds it (exercises not done: they say what to do, the lesson goes on, and the library's
version of a piece to build is not shown) and with the reference solutions (every exercise
check must pass), and ends with an honest summary line; three lessons also run as notebooks
the README's way, and no lesson's Markdown lands in a code cell. Every exercise check passes
its solution and rejects, with a message, each class of wrong answer listed in WRONG (a
walk that is exponential fails fast); the counting exercises refuse the model-building
shortcut; a piece that slips past its check and breaks the lesson later fails the lesson,
which still ends with its summary line.

A lesson proves what it teaches with asserts at its end, so exit code 0 and its last line
are the test. Lessons run in a fresh process from a temporary working directory (they
find the repository through the installed package, not the working directory), with
their figures going to a temporary folder.
"""
import itertools
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
# (lesson, with solutions): quick lessons, executed as the README says (jupytext --execute)
NOTEBOOKS = [("02_autograd.py", True), ("05_depthwise.py", False), ("09_mbconv.py", True)]

sys.path.insert(0, LESSONS_DIR)
import checks  # noqa: E402  (lessons/checks/: every exercise's check)
import course  # noqa: E402  (lessons/course.py: the course's helpers)


def _text(name):
    with open(os.path.join(LESSONS_DIR, name), encoding="utf-8") as f:
        return f.read()


def _solutions(number):
    return course._solutions_module(number)


def test_seventeen_lessons_from_00_to_16():
    assert [int(n[:2]) for n in LESSONS] == list(range(17)), LESSONS


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
    ids = checks.of_lesson(name[:2])
    assert bool(ids) == (name[:2] != "00"), f"every lesson from 01 on has exercises; {name} has {ids}"
    for exercise_id in ids:
        assert f"# EXERCISE {exercise_id}" in text, f"{name}: no cell marked EXERCISE {exercise_id}"
        assert f'lesson.exercise("{exercise_id}"' in text, f"{name}: exercise {exercise_id} is never checked"
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.reads(text, fmt="py:percent")
    kinds = {cell.cell_type for cell in notebook.cells}
    assert kinds == {"markdown", "code"}, kinds


def test_course_code_is_numpy_free():
    for folder in (LESSONS_DIR, os.path.join(LESSONS_DIR, "solutions"), os.path.join(LESSONS_DIR, "checks")):
        for name in os.listdir(folder):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    assert not re.search(r"^\s*(import numpy|from numpy)", f.read(), re.M), name


def test_at_least_ten_figures():
    assert sum(_text(name).count("lesson.show(") for name in LESSONS) >= 10


def _answer_lines(exercise_id):
    """The lines of the library's code that answer an exercise (its Exercise.answer), long
    enough to be that code's own: what an unsolved run must not print."""
    import importlib
    import inspect
    lines = []
    for where in checks.get(exercise_id).answer:
        module, _, qualname = where.partition(":")
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        lines += [line.strip() for line in inspect.getsource(obj).splitlines()]
    return [line for line in lines if len(line) >= 30 and not line.startswith(("#", '"""', "def ", "class "))]


def test_every_answer_names_library_code():
    for exercise_id, spec in checks.every().items():
        if spec.builds and exercise_id not in {"02.2", "03.2", "14.1"}:  # no library code is their answer
            assert spec.answer and _answer_lines(exercise_id), exercise_id


def _run(name, solutions, figures):
    env = dict(os.environ, TINYEFFNET_FIGURES=str(figures))
    env.pop("XLA_FLAGS", None)  # lesson 13 sets its own device count in a subprocess
    env.pop("TINYEFFNET_SOLUTIONS", None)
    if solutions:
        env["TINYEFFNET_SOLUTIONS"] = "1"
    env["TINYEFFNET_CAPSTONE_MINUTES"] = "0.3"  # lesson 16's toy path: the suite cannot afford its 10 minutes
    start = time.time()
    done = subprocess.run([sys.executable, os.path.join(LESSONS_DIR, name)], cwd=figures, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    return done, time.time() - start


def _last_line(number, solutions):
    """What a lesson's last line must be: the exercises passed, to do and wrong; "passed"
    only when all are."""
    ids = checks.of_lesson(number)
    if not ids:
        return f"lesson {number} passed: no exercises; its own checks hold"
    if solutions:
        return (f"lesson {number} passed: all {len(ids)} exercise{'s' if len(ids) != 1 else ''} "
                f"({len(ids)} passed, 0 to do, 0 wrong); its own checks hold")
    return (f"lesson {number} not passed yet: exercises 0 passed, {len(ids)} to do, 0 wrong of {len(ids)} "
            f"(to do: {', '.join(ids)}); its own checks hold")


# With the reference solutions every lesson runs in the documentation build (tests/test_docs.py
# checks each page ends with its all-passed line): running them again here would double the
# suite's longest part. Revealing answers once passed is tested in-process below.
@pytest.mark.parametrize("solutions", [False], ids=["as-found"])
@pytest.mark.parametrize("name", LESSONS)
def test_lesson_runs(name, solutions, tmp_path):
    done, seconds = _run(name, solutions, tmp_path)
    number = name[:2]
    assert done.returncode == 0, (f"{name} failed (exit {done.returncode}, {seconds:.0f} s)\n"
                                  f"--- stderr (tail) ---\n{done.stderr[-4000:]}\n"
                                  f"--- stdout (tail) ---\n{done.stdout[-2000:]}")
    last = done.stdout.rstrip().splitlines()[-1]
    assert last == _last_line(number, solutions), f"{name} did not end with its summary: {last!r}"
    for exercise_id in checks.of_lesson(number):
        word = "passed" if solutions else "to do in the cell marked"
        assert f"exercise {exercise_id} ({checks.get(exercise_id).name}): {word}" in done.stdout
        shown = [line for line in _answer_lines(exercise_id) if line in done.stdout]
        if not solutions:
            assert not shown, f"the unsolved {name} prints the answer of exercise {exercise_id}: {shown[:3]}"
        elif f'lesson.reveal("{exercise_id}"' in _text(name):
            assert shown, f"{name} with the solutions does not show the library's answer to exercise {exercise_id}"
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]
    assert "it/s]" not in done.stdout + done.stderr and "step/s]" not in done.stdout + done.stderr, "tqdm noise"
    from PIL import Image
    figures = re.findall(r"^figure: (.+\.png)$", done.stdout, re.M)
    for path in figures:
        assert os.path.dirname(path) == str(tmp_path), f"{path} is not in $TINYEFFNET_FIGURES"
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 200, (path, image.size)
            assert image.convert("L").getextrema()[0] < 128, f"{path} is blank"
    assert len(figures) == _text(name).count("lesson.show("), "every lesson.show saves one figure"


@pytest.mark.parametrize("name", LESSONS)
def test_markdown_never_lands_in_a_code_cell(name):
    """Converted with jupytext, no code cell holds a Markdown heading or ends in a block of
    comment lines (the text of a Markdown cell whose '# %% [markdown]' marker is missing)."""
    jupytext = pytest.importorskip("jupytext")
    for cell in jupytext.reads(_text(name), fmt="py:percent").cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.rstrip().splitlines()
        headings = [line for line in lines if re.match(r"#\s*#+ ", line)]
        assert not headings, f"{name}: Markdown heading inside a code cell: {headings[0]!r}"
        assert lines and not lines[-1].lstrip().startswith("#"), \
            f"{name}: a code cell ends in comments (Markdown without its marker?): {lines[-3:]}"


@pytest.mark.parametrize("name,solutions", NOTEBOOKS, ids=[n for n, _ in NOTEBOOKS])
def test_lesson_runs_as_notebook_the_readme_way(name, solutions, tmp_path):
    """The README's command, run from an unrelated folder: `jupytext --to notebook
    --set-kernel python3 --execute PATH` converts the lesson and runs it in a Jupyter kernel
    (ipykernel and nbconvert come with the `test` extra). Figures show inline (image/png
    outputs, none saved), tables render as Markdown, and the last line is the summary."""
    if not os.environ.get("CI"):
        for module in ("jupytext", "nbconvert", "ipykernel"):
            pytest.importorskip(module)
    import nbformat
    jupytext_cli = os.path.join(os.path.dirname(sys.executable), "jupytext")
    env = dict(os.environ, TINYEFFNET_FIGURES=str(tmp_path / "figures"),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("TINYEFFNET_SOLUTIONS", None)
    if solutions:
        env["TINYEFFNET_SOLUTIONS"] = "1"
    output = tmp_path / name.replace(".py", ".ipynb")
    done = subprocess.run([jupytext_cli, "--to", "notebook", "--set-kernel", "python3", "--execute",
                           os.path.join(LESSONS_DIR, name), "--output", str(output)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    notebook = nbformat.read(str(output), as_version=4)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors[:1]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    tables = [o for o in outputs if "text/markdown" in o.get("data", {})]
    assert text.rstrip().splitlines()[-1] == _last_line(name[:2], solutions), text[-2000:]
    assert len(images) == _text(name).count("lesson.show(") and images, "figures show inline"
    assert all(o["data"]["text/markdown"].startswith("| ") for o in tables), "tables render as Markdown"
    assert "figure: " not in text and not os.path.exists(tmp_path / "figures"), "nothing saved in a notebook"


# ---------------------------------------------------------------------------- the checks
# Plausible wrong answers, by the class of mistake they stand for: each exercise's check must
# reject every one of them with a message (and, where a check promises a precise message, say
# it). Most are the reference solution with one thing changed, so that each fails for its
# own reason only.
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


def _wrong_tanh(backward):
    class Wrong(_solutions("02").Tanh):
        pass

    Wrong.backward = backward
    return Wrong


def _tanh_forgets_chain_rule(self, grad):
    return (grad,)


def _tanh_uses_the_input(self, grad):  # 1 - x^2 instead of 1 - tanh(x)^2
    b = self.backend
    x = b.mul(b.full(b.shape(self.y), 0.5, b.dtype(self.y)), b.log(b.div(b.add(b.full(b.shape(self.y), 1.0,
          b.dtype(self.y)), self.y), b.sub(b.full(b.shape(self.y), 1.0, b.dtype(self.y)), self.y))))
    return (b.mul(grad, b.sub(b.full(b.shape(x), 1.0, b.dtype(x)), b.mul(x, x))),)


# ---- 02.3: backward
def _postorder(root, visited=True, constants=False):
    """Every tensor after its inputs; without `visited`, once per path (duplicates kept); with
    `constants`, the inputs that need no gradient too."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif not visited or id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            if node._ctx is not None:
                stack.extend((p, False) for p in node._ctx.parents if p.requires_grad or constants)
    return order


def _level_order(root):
    """Breadth-first from the root, each tensor once: not an order in which gradients are complete."""
    order, seen, queue = [], {id(root)}, [root]
    while queue:
        node = queue.pop(0)
        order.append(node)
        for p in (node._ctx.parents if node._ctx is not None else ()):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                queue.append(p)
    return order[::-1]


def _first_of_each(order):
    seen, out = set(), []
    for node in order:
        if id(node) not in seen:
            seen.add(id(node))
            out.append(node)
    return out


def _backward(accumulate=True, add_to_leaf=True, recursive=False, order="dfs", grad_type="tensor",
              needs_grad=True):
    """A learner's run_backward with one mistake."""
    from tinyeffnet import Tensor

    def order_recursive(node, out, seen):
        if id(node) in seen:
            return
        seen.add(id(node))
        if node._ctx is not None:
            for p in node._ctx.parents:
                if p.requires_grad:
                    order_recursive(p, out, seen)
        out.append(node)

    def run_backward(root):
        if recursive:
            nodes = []
            order_recursive(root, nodes, set())
        elif order == "per path":  # no visited set: right on small graphs, exponential on shared ones
            nodes = _first_of_each(_postorder(root, visited=False))
        elif order == "levels":
            nodes = _level_order(root)
        else:
            nodes = _postorder(root, constants=not needs_grad)
        bk = root.backend
        grads = {id(root): bk.full(root.shape, 1.0, root.dtype)}
        for node in reversed(nodes):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._ctx is None:
                if grad_type == "array":
                    node.grad = g if node.grad is None else bk.add(node.grad, g)
                else:
                    node.grad = Tensor(g, bk) if node.grad is None or not add_to_leaf else \
                        Tensor(bk.add(node.grad.data, g), bk)
                continue
            for parent, needed, pg in zip(node._ctx.parents, node._ctx.needs_grad, node._ctx.backward(g)):
                if pg is None and not needs_grad:  # None taken for a zero gradient, handed on all the same
                    pg = bk.full(parent.shape, 0.0, parent.dtype)
                if (needed or not needs_grad) and pg is not None:
                    grads[id(parent)] = bk.add(grads[id(parent)], pg) if accumulate and id(parent) in grads else pg
    return run_backward


def _push_per_path(root):
    """Each gradient pushed down on its own along every path (right by linearity, exponential)."""
    from tinyeffnet import Tensor
    bk = root.backend
    stack = [(root, bk.full(root.shape, 1.0, root.dtype))]
    while stack:
        node, g = stack.pop()
        if node._ctx is None:
            node.grad = Tensor(g, bk) if node.grad is None else Tensor(bk.add(node.grad.data, g), bk)
            continue
        for parent, needed, pg in zip(node._ctx.parents, node._ctx.needs_grad, node._ctx.backward(g)):
            if needed and pg is not None:
                stack.append((parent, pg))


# ---- 02.4: the broadcast reduction
def _unbroadcast_leading_only(grad, shape):
    extra = grad.ndim - len(shape)
    return grad.sum(axis=tuple(range(extra))) if extra else grad


def _unbroadcast_ones_only(grad, shape):
    grown = tuple(i for i, n in enumerate(shape) if n == 1 and i < grad.ndim and grad.shape[i] != 1)
    return grad.sum(axis=grown, keepdims=True) if grown else grad


def _unbroadcast_left_aligned(grad, shape):  # lines shape up with grad's FIRST axes, drops the last ones
    grown = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    g = grad.sum(axis=grown, keepdims=True) if grown else grad
    extra = grad.ndim - len(shape)
    return g.sum(axis=tuple(range(g.ndim - extra, g.ndim))) if extra else g


def _unbroadcast_keeps_leading_ones(grad, shape):  # (1, 3) where (3,) was asked
    extra = grad.ndim - len(shape)
    g = grad.sum(axis=tuple(range(extra)), keepdims=True) if extra else grad
    grown = tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    return g.sum(axis=grown, keepdims=True) if grown else g


def _unbroadcast_mean(grad, shape):
    out = _solutions("02").unbroadcast(grad, shape)
    return out * (out.size / grad.size)


def _unbroadcast_nested_lists(grad, shape):
    return _solutions("02").unbroadcast(grad, shape).tolist()


# ---- 03.2: a numerical gradient
def _nudge(x, index, eps):
    from tinyeffnet import Tensor
    values = x.to_flat()
    values[index] += eps
    return Tensor(values).reshape(*x.shape)


def _numeric_grad_in_place(f, x, index, eps=1e-5):  # nudges x's own storage and leaves it nudged
    x.data.data[index] += eps
    up = f(x).item()
    x.data.data[index] -= 2 * eps
    down = f(x).item()
    return (up - down) / (2 * eps)


def _numeric_grad_own_eps(f, x, index, eps=1e-5):
    return _solutions("03").numeric_grad(f, x, index)


# ---- 04: convolution by hand
def _resplit(pad):
    """TensorFlow's split of each axis's total padding, whatever was asked."""
    return tuple((total // 2, total - total // 2) for total in (sum(pad[0]), sum(pad[1])))


def _symmetric(pad):
    """The total padding split with the odd pixel in front (PyTorch-like), whatever was asked."""
    return tuple((total - total // 2, total // 2) for total in (sum(pad[0]), sum(pad[1])))


def _conv(mistake):
    """Lesson 04's window loops with one mistake: 'flip' the kernel, 'swap' the padding's ends,
    'offset' forgotten (rows read from the padded, not the unpadded, input), 'axes' (rows padded
    as columns and columns as rows), 'resplit' or 'symmetric' (the given padding re-split), 'same'
    (SAME's ceil(n / s) outputs whatever the padding)."""
    sol = _solutions("04")

    def taps(x_shape, k, out_h, out_w, stride, padding):
        (top, bottom), (left, right) = padding
        if mistake == "swap":
            top, left = bottom, right
        n, h, w, _ = x_shape
        for b in range(n):
            for p in range(out_h):
                for q in range(out_w):
                    for a in range(k):
                        for c in range(k):
                            row = p * stride + a - (0 if mistake == "offset" else top)
                            col = q * stride + c - (0 if mistake == "offset" else left)
                            if 0 <= row < h and 0 <= col < w:
                                ka, kc = (k - 1 - a, k - 1 - c) if mistake == "flip" else (a, c)
                                yield b, p, q, ka, kc, row, col

    def padding_of(pad):
        return {"axes": lambda p: (p[1], p[0]), "resplit": _resplit, "symmetric": _symmetric}.get(mistake,
                                                                                                 lambda p: p)(pad)

    def run(fn, *args):
        saved, saved_out = sol._windows, sol._out_size
        sol._windows = taps
        if mistake == "same":
            sol._out_size = lambda size, k, stride, pad: math.ceil(size / stride)
        try:
            return fn(*args[:-1], padding_of(args[-1]))
        finally:
            sol._windows, sol._out_size = saved, saved_out

    return dict(forward=lambda x, w, s, p: run(sol.conv2d_windows, x, w, s, p),
                grad_input=lambda dy, w, shape, s, p: run(sol.conv_grad_input, dy, w, shape, s, p),
                grad_weight=lambda x, dy, k, s, p: run(sol.conv_grad_weight, x, dy, k, s, p))


# ---- 06: batch norm
def _bn_forward_unbiased(x, gamma, beta, eps):
    m = x.shape[0] * x.shape[1] * x.shape[2]
    centred = x - x.mean(axis=(0, 1, 2), keepdims=True)
    var = (centred * centred).sum(axis=(0, 1, 2), keepdims=True) * (1.0 / (m - 1))
    return centred * (var + eps) ** -0.5 * gamma + beta


def _bn_forward_eps_outside(x, gamma, beta, eps):
    centred = x - x.mean(axis=(0, 1, 2), keepdims=True)
    return centred / ((centred * centred).mean(axis=(0, 1, 2), keepdims=True) ** 0.5 + eps) * gamma + beta


def _bn_forward_over(axes):
    def bn_forward(x, gamma, beta, eps):
        centred = x - x.mean(axis=axes, keepdims=True)
        return centred * ((centred * centred).mean(axis=axes, keepdims=True) + eps) ** -0.5 * gamma + beta
    return bn_forward


def _bn_forward_nested_lists(x, gamma, beta, eps):
    return _solutions("06").bn_forward(x, gamma, beta, eps).tolist()


def _bn_backward(constant_statistics=False, forget_xhat_term=False, count="NHW", dgamma_of="xhat",
                 dgamma_keepdims=False):
    def bn_backward(x, gamma, beta, dy, eps):
        axes = (0, 1, 2)
        m = x.shape[0] * x.shape[1] * (x.shape[2] if count == "NHW" else 1)
        centred = x - x.mean(axis=axes, keepdims=True)
        invstd = ((centred * centred).mean(axis=axes, keepdims=True) + eps) ** -0.5
        xhat, dxhat = centred * invstd, dy * gamma
        if constant_statistics:
            dx = dxhat * invstd  # as if mean and var did not depend on x
        else:
            dx = dxhat * float(m) - dxhat.sum(axis=axes, keepdims=True)
            if not forget_xhat_term:
                dx = dx - xhat * (dxhat * xhat).sum(axis=axes, keepdims=True)
            dx = invstd * (1.0 / m) * dx
        dgamma = (dy * (xhat if dgamma_of == "xhat" else x)).sum(axis=axes, keepdims=dgamma_keepdims)
        return dx, dgamma, dy.sum(axis=axes)
    return bn_backward


def _bn_backward_by_autograd(x, gamma, beta, dy, eps):
    """Autograd inside a backward: fine alone, but the engine runs a Function's backward under no_grad."""
    from tinyeffnet import Tensor
    leaves = [Tensor(t.data, requires_grad=True) for t in (x, gamma, beta)]
    (_solutions("06").bn_forward(*leaves, eps) * dy).sum().backward()
    return tuple(t.grad for t in leaves)


# ---- 08: squeeze-and-excitation
def _se(pool="mean", first="swish", second="sigmoid", excite=True, bias2=True, detach=False):
    from tinyeffnet import Tensor, functional as F

    def se_forward(x, w1, b1, w2, b2):
        s = {"mean": lambda: x.mean(axis=(1, 2), keepdims=True), "max": lambda: x.max(axis=(1, 2), keepdims=True),
             "rows": lambda: x.mean(axis=1, keepdims=True), "batch": lambda: x.mean(axis=(0, 1, 2), keepdims=True)}[pool]()
        h = F.conv2d(s, w1) + b1
        h = getattr(F, first)(h) if first else h
        gate = getattr(F, second)(F.conv2d(h, w2) + (b2 if bias2 else 0.0))
        out = x * gate if excite else gate
        return Tensor(out.tolist()) if detach else out
    return se_forward


# ---- 09: MBConv
def _mbconv(mistake=None):
    from tinyeffnet import functional as F

    def mbconv_forward(block, x, key=None):
        if mistake == "calls the block":
            return block(x, key)
        spec = block.spec
        h = x
        if spec.expand_ratio != 1:
            h = F.swish(block.bn0(block.expand_conv(h)))
        if mistake == "BN twice":
            block.bn1(block.depthwise_conv(h))  # a look at the values first: moves the statistics once more
        h = F.swish(block.bn1(block.depthwise_conv(h)))
        if spec.se_position == "dw" or (mistake == "SE always after the depthwise conv" and spec.se_position):
            h = block.se(h)
        h = block.bn2(block.project_conv(h))
        if mistake == "swish after the projection":
            h = F.swish(h)
        if spec.se_position == "end" and mistake != "SE always after the depthwise conv":
            h = block.se(h)
        if spec.has_skip and mistake != "no skip":
            if mistake == "skip without drop-connect":
                h = h + x
            elif mistake == "drop-connect after the sum":
                h = block.drop_connect(h + x, key)
            elif mistake == "drop-connect by hand, also in eval":
                h = F.drop_connect(h, spec.drop_rate, key) + x if spec.drop_rate else h + x
            else:
                h = block.drop_connect(h, key) + x
        return h
    return mbconv_forward


# ---- 10
def _wrong_seend(variant, base_count):
    from tinyeffnet.model.efficientnet import block_specs
    total = base_count
    for s in block_specs(variant):
        if s.se_position == "end":
            mid, r_mid, r_out = s.in_channels * s.expand_ratio, max(1, int(s.in_channels / 4)), max(1, s.out_channels // 4)
            total += -(2 * mid * r_mid + r_mid + mid) + 2 * s.out_channels * r_out + r_out + s.out_channels  # r from out
    return total


def _seend_without_biases(variant, base_count):
    from tinyeffnet.model.efficientnet import block_specs
    total = base_count
    for s in block_specs(variant):
        if s.se_position == "end":
            r = max(1, int(s.in_channels * 0.25))
            total += 2 * r * (s.out_channels - s.in_channels * s.expand_ratio)
    return total


def _seend_by_building(variant, base_count):
    from tinyeffnet.model import build_model
    return build_model(variant, backend="meta").num_parameters()


# ---- 11.3: the training step
def _train_step(keep_buffers=False, ignore_smoothing=False, ascend=False, no_key=False, train_mode=True,
                bind_buffers=True, buffers_inside=True, new_momentum=True):
    from tinyeffnet import Tensor, functional as F
    from tinyeffnet.training.optimizer import apply_updates

    def train_step(net, optimizer, state, images, labels, key, lr, label_smoothing):
        if train_mode:
            net.train()
        with net.bind(state["params"], state["buffers"] if bind_buffers else None) as leaves:
            logits = net(Tensor(images, net.backend), key=None if no_key else key)
            loss = F.cross_entropy(logits, labels, 0.0 if ignore_smoothing else label_smoothing)
            loss.backward()
            grads = {name: leaf.grad.data for name, leaf in leaves.items()}
            buffers = {name: b.data for name, b in net.named_buffers()}
        if not buffers_inside:  # read after the block: the network's own statistics, not this batch's
            buffers = {name: b.data for name, b in net.named_buffers()}
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = apply_updates(net.backend, state["params"], updates, -lr if ascend else lr)
        return dict(params=params, buffers=state["buffers"] if keep_buffers else buffers,
                    opt_state=opt_state if new_momentum else state["opt_state"]), loss
    return train_step


def _train_step_own_parameters(net, optimizer, state, images, labels, key, lr, label_smoothing):
    """Reads the gradients from the network's own parameters, which the bound leaves replaced."""
    from tinyeffnet import Tensor, functional as F
    net.train()
    with net.bind(state["params"], state["buffers"]):
        loss = F.cross_entropy(net(Tensor(images, net.backend), key=key), labels, label_smoothing)
        loss.backward()
        buffers = {name: b.data for name, b in net.named_buffers()}
    grads = {name: p.grad.data for name, p in net.named_parameters()}
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    return dict(params=state["params"], buffers=buffers, opt_state=opt_state), loss


# ---- 13.1: depthwise by taps
def _depthwise(flip=False, centred_padding=False, kernel=None, swap_axes=False, no_gradient=False):
    def depthwise_taps(x, w, stride, padding):
        import jax
        import jax.numpy as jnp
        k = kernel or w.shape[0]
        if centred_padding:
            padding = ((k // 2, k // 2), (k // 2, k // 2))
        if swap_axes:
            padding = (padding[1], padding[0])
        xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
        w = w[::-1, ::-1] if flip else w
        out_h, out_w = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
        out = 0.0
        for a in range(k):
            for b in range(k):
                window = xp[:, a:a + (out_h - 1) * stride + 1:stride, b:b + (out_w - 1) * stride + 1:stride, :]
                out = out + window * (jax.lax.stop_gradient(w[a, b, 0]) if no_gradient else w[a, b, 0])
        return out
    return depthwise_taps


# ---- 14.1: bfloat16 rounding
def _bfloat16(add=None, nan=True, ties="even", clamp=False):
    def to_bfloat16(x):
        import jax
        import jax.numpy as jnp
        bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
        kept = (bits >> 16) & 1
        bump = jnp.uint32(add) if add is not None else (0x7FFF + kept if ties == "even" else 0x8000 - kept)
        rounded = (bits + bump) & jnp.uint32(0xFFFF0000)
        if nan:
            rounded = jnp.where(jnp.isnan(x), (bits & jnp.uint32(0x80000000)) | jnp.uint32(0x7FC00000), rounded)
        out = jax.lax.bitcast_convert_type(rounded.astype(jnp.uint32), jnp.float32)
        if clamp:  # overflow kept at the largest finite bfloat16 instead of inf
            top = float(jnp.finfo(jnp.bfloat16).max)
            out = jnp.where(jnp.isinf(out) & ~jnp.isinf(x), jnp.sign(x) * top, out)
        return out
    return to_bfloat16


# ---- 15, 16
def _paired(unpaired=False, z=False):
    import statistics

    from tinyeffnet.experiments.paired import t_quantile

    def paired_interval(a, b):
        seeds = sorted(set(a) & set(b))
        if unpaired:
            va, vb = [a[s] for s in seeds], [b[s] for s in seeds]
            mean = statistics.fmean(va) - statistics.fmean(vb)
            sd = math.sqrt(statistics.stdev(va) ** 2 + statistics.stdev(vb) ** 2)
        else:
            d = [a[s] - b[s] for s in seeds]
            mean, sd = statistics.fmean(d), statistics.stdev(d)
        half = (1.959964 if z else t_quantile(0.975, len(seeds) - 1)) * sd / math.sqrt(len(seeds))
        return mean, mean - half, mean + half
    return paired_interval


def _variant_without_end_se(base_count):
    from tinyeffnet.model.efficientnet import block_specs
    total = base_count
    for base, mine in zip(block_specs("base"), block_specs(_solutions("16").my_variant)):
        if mine.se_position != base.se_position:
            r, mid = max(1, int(base.in_channels * 0.25)), base.in_channels * base.expand_ratio
            total -= 2 * mid * r + r + mid
    return total - 1  # and off by one, so that it is wrong for a nose variant too


def _sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


WRONG = {  # exercise -> {the class of mistake: a wrong answer of that class}
    "01.1": {"column-major": lambda index, shape: sum(i * math.prod(shape[:k]) for k, i in enumerate(index)),
             "strides are the sizes": lambda index, shape: sum(i * n for i, n in zip(index, shape))},
    "01.2": {"tiles the whole array": lambda values, shape, new: values * (math.prod(new) // len(values)),
             "repeats each value": lambda values, shape, new: [v for v in values
                                                                for _ in range(math.prod(new) // len(values))],
             "nested lists": lambda values, shape, new: [_solutions("01").expand_flat(values, shape, new)],
             "wraps around instead of reading index 0": lambda values, shape, new: [
                 values[_solutions("01").flat_index(i, new) % len(values)] for i in itertools.product(*map(range, new))]},
    "02.1": {"misses a*a's path": lambda a, b: (3 * _sigmoid(a * b + a * a) * (1 - _sigmoid(a * b + a * a)) * b,
                                               3 * _sigmoid(a * b + a * a) * (1 - _sigmoid(a * b + a * a)) * a),
             "forgets the 3": lambda a, b: (_sigmoid(a * b + a * a) * (1 - _sigmoid(a * b + a * a)) * (b + 2 * a),
                                           _sigmoid(a * b + a * a) * (1 - _sigmoid(a * b + a * a)) * a)},
    "02.2": {"forgets the chain rule": _wrong_tanh(_tanh_forgets_chain_rule),
             "1 - x^2 from the input": _wrong_tanh(_tanh_uses_the_input)},
    "02.3": {"no accumulation": _backward(accumulate=False), "recursive order": _backward(recursive=True),
             "leaf .grad overwritten": _backward(add_to_leaf=False),
             "no visited set (exponential)": _backward(order="per path"), "breadth-first order": _backward(order="levels"),
             "each gradient pushed along every path (exponential)": _push_per_path,
             ".grad a backend array": _backward(grad_type="array"),
             "None taken for a zero gradient": _backward(needs_grad=False)},
    "02.4": {"leading axes only": _unbroadcast_leading_only, "size-1 axes only": _unbroadcast_ones_only,
             "aligned from the left": _unbroadcast_left_aligned, "leading axes kept as ones": _unbroadcast_keeps_leading_ones,
             "mean instead of sum": _unbroadcast_mean, "nested lists": _unbroadcast_nested_lists},
    "03.1": {"the measured error": lambda x, eps: abs((math.exp(x + eps) - math.exp(x - eps)) / (2 * eps) - math.exp(x)),
             "the one-sided error": lambda x, eps: math.exp(x) * eps / 2,
             "x = 1's only": lambda x, eps: math.e * eps ** 2 / 6},
    "03.2": {"one-sided": lambda f, x, index, eps=1e-5: (f(_nudge(x, index, eps)).item() - f(x).item()) / eps,
             "divides by eps": lambda f, x, index, eps=1e-5: (f(_nudge(x, index, eps)).item()
                                                             - f(_nudge(x, index, -eps)).item()) / eps,
             "changes x in place": _numeric_grad_in_place, "its own eps": _numeric_grad_own_eps},
    "04.1": {"PyTorch's symmetric padding": lambda n, k, s: (k // 2, k // 2),
             "the odd pixel in front": lambda n, k, s: tuple(reversed(_solutions("04").same_padding(n, k, s)))},
    "04.2": {name: _conv(mistake)["forward"] for name, mistake in (
        ("a true convolution (kernel flipped)", "flip"), ("padding's ends swapped", "swap"),
        ("rows padded as columns", "axes"), ("padding re-split TensorFlow's way", "resplit"),
        ("padding re-split symmetrically", "symmetric"), ("SAME's output size always", "same"),
        ("the padding offset forgotten", "offset"))},
    "04.3": {name: _conv(mistake)["grad_input"] for name, mistake in (
        ("kernel flipped", "flip"), ("the padding offset forgotten", "offset"), ("rows padded as columns", "axes"),
        ("padding re-split TensorFlow's way", "resplit"), ("padding's ends swapped", "swap"))},
    "04.4": {name: _conv(mistake)["grad_weight"] for name, mistake in (
        ("the padding offset forgotten", "offset"), ("kernel flipped", "flip"), ("rows padded as columns", "axes"),
        ("padding re-split symmetrically", "symmetric"), ("padding's ends swapped", "swap"))},
    "05.1": {"stride ignored": lambda h, w, c_in, c_out, k, stride: (h * w * c_in * k * k + h * w * c_in * c_out,
                                                                    k * k * c_in + c_in * c_out),
             "a full convolution's cost": lambda h, w, c_in, c_out, k, stride: (
                 math.ceil(h / stride) * math.ceil(w / stride) * k * k * c_in * c_out, k * k * c_in * c_out)},
    "06.1": {"unbiased variance": _bn_forward_unbiased, "eps outside the root": _bn_forward_eps_outside,
             "statistics per image": _bn_forward_over((1, 2)), "statistics over N only": _bn_forward_over((0,)),
             "nested lists": _bn_forward_nested_lists},
    "06.2": {"statistics held constant": _bn_backward(constant_statistics=True),
             "the xhat term forgotten": _bn_backward(forget_xhat_term=True), "autograd inside": _bn_backward_by_autograd,
             "dgamma kept 4-D": _bn_backward(dgamma_keepdims=True), "M counts N and H only": _bn_backward(count="NH"),
             "dgamma from x, not xhat": _bn_backward(dgamma_of="x")},
    "07.1": {"log instead of log1p": lambda x: max(x, 0.0) + math.log(1 + math.exp(-abs(x))),
             "overflows": lambda x: math.log(1 + math.exp(x))},
    "07.2": {"forgets the x s (1 - s) term": lambda x: _sigmoid(x),
             "a sign": lambda x: _sigmoid(x) * (1 - x * (1 - _sigmoid(x)))},
    "08.1": {"sigmoid and swish swapped": _se(first="sigmoid", second="swish"), "no activation": _se(first=None),
             "max pooling": _se(pool="max"), "relu instead of swish": _se(first="relu"),
             "pooled over the batch too": _se(pool="batch"), "pooled over H only": _se(pool="rows"), "the gate, not x times it": _se(excite=False),
             "the expand bias forgotten": _se(bias2=False), "off autograd's tape": _se(detach=True)},
    "09.1": {name: _mbconv(name) for name in (
        "no skip", "SE always after the depthwise conv", "calls the block", "skip without drop-connect",
        "drop-connect after the sum", "swish after the projection", "BN twice", "drop-connect by hand, also in eval")},
    "10.1": {"r from the output channels": _wrong_seend, "biases forgotten": _seend_without_biases,
             "builds the model": _seend_by_building},
    "10.2": {"plain fans for depthwise": lambda kernel, c_in, c_out, depthwise: math.sqrt(
        6 / (kernel * kernel * (c_in + c_out))),
             "fans off by a little": lambda kernel, c_in, c_out, depthwise: math.sqrt(
                 6 / (kernel * kernel * c_in * 2)) if depthwise else
             math.sqrt(6 / (kernel * kernel * (c_in + c_out))) * (1 if kernel > 1 else 1.01)},
    "11.1": {"the label gets 1 - s": lambda k, s: -((1 - s) * math.log(1 - s) + (k - 1) * (s / k) * math.log(s / k)),
             "k, not k - 1": lambda k, s: -((1 - s + s / k) * math.log(1 - s + s / k) + k * (s / k) * math.log(s / k))},
    "11.2": {"heavy ball": lambda param, grad, velocity, lr, momentum, wd: (
        param - lr * (grad + wd * param + momentum * velocity), grad + wd * param + momentum * velocity),
             "decay outside the momentum": lambda param, grad, velocity, lr, momentum, wd: (
        param - lr * (grad + momentum * (grad + momentum * velocity)) - lr * wd * param, grad + momentum * velocity)},
    "11.3": {"old BN statistics": _train_step(keep_buffers=True), "no smoothing": _train_step(ignore_smoothing=True),
             "ascends": _train_step(ascend=True), "no key": _train_step(no_key=True),
             "never in training mode": _train_step(train_mode=False), "parameters bound, buffers not":
                 _train_step(bind_buffers=False), "statistics read after the with block": _train_step(buffers_inside=False),
             "momentum not kept": _train_step(new_momentum=False), "the network's own parameters": _train_step_own_parameters},
    "12.1": {"relu": lambda x, slope: x.relu(), "slope ignored": lambda x, slope: x.maximum(x * 0.1)},
    "13.1": {"kernel flipped": _depthwise(flip=True), "centred padding": _depthwise(centred_padding=True),
             "kernel size 3 hard-coded": _depthwise(kernel=3), "rows padded as columns": _depthwise(swap_axes=True),
             "no gradient to the kernel": _depthwise(no_gradient=True)},
    "14.1": {"truncation": _bfloat16(add=0, nan=False), "ties rounded up": _bfloat16(add=0x8000),
             "NaN not kept": _bfloat16(nan=False), "ties to odd": _bfloat16(ties="odd"),
             "overflow clamped": _bfloat16(clamp=True)},
    "15.1": {"unpaired": _paired(unpaired=True), "z instead of t": _paired(z=True)},
    "16.1": {"the paper's nose@all": "nose@all", "seend@all by another name": "seend@stage2-8",
             "nose@all by another name": "nose@stage2-8"},
    "16.2": {"base's count": lambda base_count: base_count, "off by one": _variant_without_end_se,
             "builds the model": lambda base_count: _seend_by_building(_solutions("16").my_variant, base_count)},
}
# What the message must say, where a check promises more than "wrong": (exercise, class) -> words
MESSAGES = {
    ("02.3", "no visited set (exponential)"): "exponential", ("02.3", "each gradient pushed along every path "
                                                             "(exponential)"): "exponential",
    ("02.3", ".grad a backend array"): "must be a Tensor", ("02.3", "None taken for a zero gradient"):
        "needs_grad", ("02.3", "recursive order"): "recursion limit",
    ("02.4", "nested lists"): "return a Tensor", ("02.4", "leading axes kept as ones"): "shape",
    ("03.2", "changes x in place"): "changed its input", ("03.2", "its own eps"): "the eps you are given",
    ("06.1", "nested lists"): "return a Tensor", ("06.2", "autograd inside"): "no_grad",
    ("08.1", "off autograd's tape"): "tape", ("09.1", "calls the block"): "build it from the block's parts",
    ("09.1", "BN twice"): "BN statistic", ("11.3", "never in training mode"): "training mode",
    ("11.3", "parameters bound, buffers not"): "buffers", ("13.1", "kernel size 3 hard-coded"): "kernel 5x5",
    ("14.1", "NaN not kept"): "NaN must stay a NaN",
}
COUNTING = {"05.1", "10.1", "16.2"}  # the exercises that count by hand: at most three
SLOW = {"02.3": 10.0}  # seconds: an exponential answer must fail fast


def _context(exercise_id):
    return {"variant": _solutions("16").my_variant} if exercise_id == "16.2" else {}


def test_every_exercise_has_a_solution_and_two_wrong_answers():
    assert sorted(WRONG) == sorted(checks.every())
    assert all(len(wrongs) >= 2 for wrongs in WRONG.values())
    assert all(exercise_id in WRONG and name in WRONG[exercise_id] for exercise_id, name in MESSAGES)


def test_build_not_count():
    """At least eight exercises build a piece of the engine; at most three count."""
    builds = [i for i, e in checks.every().items() if e.builds]
    assert len(builds) >= 8, builds
    assert len(COUNTING) <= 3 and not COUNTING & set(builds)


@pytest.mark.parametrize("exercise_id", sorted(WRONG))
def test_exercise_check_passes_the_solution_and_rejects_wrong_answers(exercise_id):
    if exercise_id.startswith(("12.", "13.", "14.")):
        pytest.importorskip("jax")
    spec = checks.get(exercise_id)
    solution = getattr(_solutions(exercise_id[:2]), spec.name)
    status, message = spec.run(solution, **_context(exercise_id))
    assert status == "passed", message
    for name, wrong in WRONG[exercise_id].items():
        start = time.time()
        status, message = spec.run(wrong, **_context(exercise_id))
        assert status == "wrong" and message, (name, status, message)
        assert MESSAGES.get((exercise_id, name), "") in message, (name, message)
        assert time.time() - start < SLOW.get(exercise_id, 120.0), (name, f"{time.time() - start:.1f} s")
    placeholder = {"my_variant": None, "Tanh": _todo_function()}.get(spec.name, _Todo())
    assert spec.run(placeholder, **_context(exercise_id)) == ("todo", spec.task)


@pytest.mark.parametrize("exercise_id", sorted(COUNTING))
def test_counting_exercises_refuse_the_model_building_shortcut(exercise_id):
    spec = checks.get(exercise_id)
    wrong = _separable_by_building if exercise_id == "05.1" else WRONG[exercise_id]["builds the model"]
    status, message = spec.run(wrong, **_context(exercise_id))
    assert status == "wrong" and "without building" in message, message


def _separable_by_building(h, w, c_in, c_out, k, stride):
    from backends import get_backend
    from tinyeffnet import Tensor
    from tinyeffnet.nn import Conv2d, DepthwiseConv2d
    meta = get_backend("meta")
    layers = [DepthwiseConv2d(c_in, k, stride, backend="meta"), Conv2d(c_in, c_out, 1, backend="meta")]
    meta.macs = 0
    x = Tensor(meta.full((1, h, w, c_in), 0.0), meta)
    for layer in layers:
        x = layer(x)
    return meta.macs, sum(layer.num_parameters() for layer in layers)


def test_unfinished_and_crashing_answers():
    spec = checks.get("01.1")
    assert spec.run(lambda index, shape: None)[0] == "todo", "a function left returning None is not written yet"
    assert spec.run(...)[0] == "todo"
    status, message = spec.run(lambda index, shape: index[5])
    assert status == "wrong" and message.startswith("your code raised IndexError"), message
    assert checks.get("16.2").run(lambda base: base)[0] == "todo", "16.2 waits for a variant (16.1)"


def test_with_solutions_a_failing_check_stops_the_lesson(monkeypatch, capsys):
    class Broken:
        central_error = staticmethod(lambda x, eps: 0.0)
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


def test_without_solutions_the_lesson_goes_on_and_ends_honestly(monkeypatch, capsys):
    monkeypatch.setattr(course, "SOLUTIONS", False)
    lesson = course.Lesson("03")
    lesson.exercise("03.1", lambda x, eps: 1.0)  # wrong: reported, not raised
    lesson.exercise("03.2", _Todo())
    lesson.finish()
    out = capsys.readouterr().out
    last = out.rstrip().splitlines()[-1]
    assert "exercise 03.1 (central_error): not right yet: at x = 1.0000, eps = 0.5 the leading Taylor term" in out
    assert "exercise 03.2 (numeric_grad): to do in the cell marked EXERCISE 03.2" in out
    assert last == ("lesson 03 not passed yet: exercises 0 passed, 1 to do, 1 wrong of 2 (to do: 03.2; wrong: 03.1); "
                    "its own checks hold"), last
    lesson = course.Lesson("03")
    lesson.exercise("03.1", _solutions("03").central_error)
    lesson.exercise("03.2", _solutions("03").numeric_grad)
    lesson.finish()
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == "lesson 03 passed: all 2 exercises (2 passed, 0 to do, 0 wrong); its own checks hold"


def test_a_piece_that_breaks_the_lesson_counts_wrong_and_the_lesson_goes_on(monkeypatch, capsys):
    """What `plugged` promises: a passed piece that raises or differs later is caught, said, and
    counted wrong (with the solutions: an error); an error while nothing is plugged is raised."""
    monkeypatch.setattr(course, "SOLUTIONS", False)
    lesson = course.Lesson("08")
    lesson.exercise("08.1", _solutions("08").se_forward)
    assert lesson.passed("08.1")
    with lesson.plugged("08.1"):
        lesson.agrees("your SE on the lesson's input", [1.0, 2.0], [1.0, 2.5])
        raise AssertionError("not reached: agrees raised")
    assert lesson.answer("08.1") is None, "a broken piece is not plugged in again"
    lesson.finish()
    out = capsys.readouterr().out.rstrip().splitlines()
    assert "exercise 08.1 (se_forward): passed its check, but broke the lesson here: your SE on the lesson's input: " \
           "yours differs from the library's by up to 5.00e-01" in out[-2], out[-2]
    assert out[-1] == "lesson 08 not passed yet: exercises 0 passed, 0 to do, 1 wrong of 1 (wrong: 08.1); its own " \
                      "checks hold", out[-1]
    with pytest.raises(ZeroDivisionError), lesson.plugged("08.1"):  # 08.1 is not plugged in any more: the lesson's
        1 / 0
    monkeypatch.setattr(course, "SOLUTIONS", True)
    lesson = course.Lesson("08")
    lesson.exercise("08.1", None)
    with pytest.raises(course.ExerciseFailed, match="08.1 broke the lesson: it raised KeyError"), \
            lesson.plugged("08.1"):
        {}["x"]


def test_reveal_shows_the_library_only_after_the_exercise_passed(monkeypatch, capsys):
    monkeypatch.setattr(course, "SOLUTIONS", False)
    lesson = course.Lesson("04")
    lesson.reveal("04.1", "def same_padding(...)")
    lesson.exercise("04.1", _solutions("04").same_padding)
    lesson.reveal("04.1", "def same_padding(...)")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "(the library's version is shown here once exercise 04.1 passes)" and out[-1] == \
        "def same_padding(...)", out


# Broken pieces that slip past their checks (the test skips the check; the lesson's other
# exercises get their solutions), each plugged into its lesson: the lesson must say what broke,
# count the exercise wrong and still end with its line.
BROKEN = {
    ("02_autograd.py", "02.3"): ("run_backward", """
from tinyeffnet import Tensor

def run_backward(root):  # a shared tensor's gradient is overwritten, not added up
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif id(node) not in visited:
            visited.add(id(node))
            stack.append((node, True))
            if node._ctx is not None:
                stack.extend((p, False) for p in node._ctx.parents if p.requires_grad)
    bk, grads = root.backend, {id(root): root.backend.full(root.shape, 1.0, root.dtype)}
    for node in reversed(order):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node._ctx is None:
            node.grad = Tensor(g, bk) if node.grad is None else Tensor(bk.add(node.grad.data, g), bk)
            continue
        for parent, needed, pg in zip(node._ctx.parents, node._ctx.needs_grad, node._ctx.backward(g)):
            if needed and pg is not None:
                grads[id(parent)] = pg
"""),
    ("06_batchnorm.py", "06.2"): ("bn_backward", """
from tinyeffnet import Tensor

def bn_backward(x, gamma, beta, dy, eps):  # autograd inside: it raises under the engine's no_grad
    leaves = [Tensor(t.data, requires_grad=True) for t in (x, gamma, beta)]
    centred = leaves[0] - leaves[0].mean(axis=(0, 1, 2), keepdims=True)
    y = centred * ((centred * centred).mean(axis=(0, 1, 2), keepdims=True) + eps) ** -0.5 * leaves[1] + leaves[2]
    (y * dy).sum().backward()
    return tuple(t.grad for t in leaves)
"""),
    ("08_squeeze_excitation.py", "08.1"): ("se_forward", """
from tinyeffnet import functional as F

def se_forward(x, w_reduce, b_reduce, w_expand, b_expand):  # max pooling instead of the mean
    s = x.max(axis=(1, 2), keepdims=True)
    return x * F.sigmoid(F.conv2d(F.swish(F.conv2d(s, w_reduce) + b_reduce), w_expand) + b_expand)
"""),
    ("09_mbconv.py", "09.1"): ("mbconv_forward", """
from tinyeffnet import functional as F

def mbconv_forward(block, x, key=None):  # the skip left out
    spec, h = block.spec, x
    if spec.expand_ratio != 1:
        h = F.swish(block.bn0(block.expand_conv(h)))
    h = F.swish(block.bn1(block.depthwise_conv(h)))
    if spec.se_position == "dw":
        h = block.se(h)
    h = block.bn2(block.project_conv(h))
    if spec.se_position == "end":
        h = block.se(h)
    return h
"""),
    ("11_training_loop.py", "11.3"): ("train_step", """
from tinyeffnet import Tensor, functional as F
from tinyeffnet.training.optimizer import apply_updates

def train_step(net, optimizer, state, images, labels, key, lr, label_smoothing):  # never net.train()
    with net.bind(state["params"], state["buffers"]) as leaves:
        loss = F.cross_entropy(net(Tensor(images, net.backend), key=key), labels, label_smoothing)
        loss.backward()
        grads = {name: leaf.grad.data for name, leaf in leaves.items()}
        buffers = {name: b.data for name, b in net.named_buffers()}
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    return dict(params=apply_updates(net.backend, state["params"], updates, lr), buffers=buffers,
                opt_state=opt_state), loss
"""),
}

_DRIVER = """
import os, runpy, sys
sys.path.insert(0, {lessons!r})
import course

namespace = {{}}
exec({source!r}, namespace)
original = course.Lesson.exercise


def exercise(self, exercise_id, answer, **context):
    if exercise_id != {exercise_id!r}:  # the others right, so that the lesson plugs every piece in
        answer = getattr(course._solutions_module(exercise_id[:2]), course.checks.get(exercise_id).name)
        return original(self, exercise_id, answer, **context)
    self.results[exercise_id], self.answers[exercise_id] = "passed", namespace[{name!r}]
    print(f"exercise {{exercise_id}}: passed (a broken piece, its check skipped by the test)")


course.Lesson.exercise = exercise
runpy.run_path({path!r}, run_name="__main__")
"""


@pytest.mark.parametrize("lesson_name,exercise_id", sorted(BROKEN), ids=[i for _, i in sorted(BROKEN)])
def test_a_broken_piece_plugged_in_fails_the_lesson(lesson_name, exercise_id, tmp_path):
    name, source = BROKEN[(lesson_name, exercise_id)]
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER.format(lessons=LESSONS_DIR, source=source, exercise_id=exercise_id, name=name,
                                     path=os.path.join(LESSONS_DIR, lesson_name)))
    env = dict(os.environ, TINYEFFNET_FIGURES=str(tmp_path))
    env.pop("TINYEFFNET_SOLUTIONS", None)
    done = subprocess.run([sys.executable, str(driver)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.rstrip().splitlines()
    spec = checks.get(exercise_id)
    assert any(line.startswith(f"exercise {exercise_id} ({spec.name}): passed its check, but broke the lesson here: ")
               for line in lines), done.stdout[-3000:]
    assert lines[-1].startswith(f"lesson {lesson_name[:2]} not passed yet: ") and f"wrong: {exercise_id}" in lines[-1], \
        lines[-1]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]


def test_figures_show_inline_in_any_kernel_front_end(monkeypatch):
    """Not a class-name test: any IPython shell running in a kernel (Colab's, VS Code's,
    JupyterLab's) displays; a terminal IPython (no kernel) saves files."""
    import types

    class ColabShell:  # not ZMQInteractiveShell by name
        kernel = object()
        config = {}

    class TerminalShell:
        kernel = None
        config = {"TerminalIPythonApp": {}}

    for shell, inline in ((ColabShell(), True), (TerminalShell(), False), (None, False)):
        monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda shell=shell: shell))
        assert course.in_notebook() is inline, type(shell).__name__


def test_markdown_table_and_source_cuts():
    assert course.markdown_table(["a", "b"], [("x", "1,234"), ("y", 5)]) == "| a | b |\n|---|---:|\n| x | 1,234 |\n| y | 5 |"
    from tinyeffnet.model.efficientnet import round_filters
    text = course.source(round_filters, cut=[("f = filters * width", "new += 8")])
    assert text.splitlines() == ["def round_filters(filters, width):", "    if width == 1.0:", "        return filters",
                                 "    ...", "    return int(new)"], text


def test_jax_lessons_pin_the_cpu_before_jax_starts():
    """Lessons 01, 12, 13 and 14 keep an accelerator runtime (and its start-up messages) out of
    their output: JAX_PLATFORMS=cpu is set before anything imports jax, even with solutions."""
    for name in ("01_tensors_and_backends.py", "12_jax_tracing.py", "13_jax_compiled.py", "14_jax_devices.py"):
        text = _text(name)
        pin = text.index("course.jax_on_the_cpu()")
        assert pin < text.index("course.Lesson("), f"{name}: the pin must come before the lesson loads its solutions"
        assert not re.search(r"^\s*(import jax|from jax)", text[:pin], re.M), name
    code = ("import os, sys; sys.path.insert(0, %r); import course; os.environ.pop('JAX_PLATFORMS', None); "
            "course.jax_on_the_cpu(); import jax; print(os.environ['JAX_PLATFORMS'], jax.default_backend())"
            % LESSONS_DIR)
    env = dict(os.environ)
    env.pop("JAX_PLATFORMS", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0 and done.stdout.split() == ["cpu", "cpu"], done.stdout + done.stderr
