"""The course in lessons/: every lesson runs and passes its own checks, both as a learner
finds it (exercises not done: they say what to do, the lesson goes on) and with the
reference solutions (every exercise check must pass), and ends with an honest summary
line; three lessons also run as notebooks the README's way, and no lesson's Markdown lands
in a code cell; every exercise check passes its solution and rejects at least two
plausible wrong answers, and the counting exercises refuse the model-building shortcut.

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
# (lesson, with solutions): quick lessons, executed as the README says (jupytext --execute)
NOTEBOOKS = [("02_autograd.py", True), ("05_depthwise.py", False), ("09_mbconv.py", True)]

sys.path.insert(0, LESSONS_DIR)
import course  # noqa: E402  (lessons/course.py: the course's helpers)
import exercises  # noqa: E402


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
    env["TINYEFFNET_CAPSTONE_MINUTES"] = "0.3"  # lesson 16's toy path: the suite cannot afford its 10 minutes
    start = time.time()
    done = subprocess.run([sys.executable, os.path.join(LESSONS_DIR, name)], cwd=figures, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    return done, time.time() - start


def _last_line(number, solutions):
    """What a lesson's last line must be: the exercises passed, to do and wrong; "passed"
    only when all are."""
    ids = exercises.of_lesson(number)
    if not ids:
        return f"lesson {number} passed: no exercises; its own checks hold"
    if solutions:
        return (f"lesson {number} passed: all {len(ids)} exercise{'s' if len(ids) != 1 else ''} "
                f"({len(ids)} passed, 0 to do, 0 wrong); its own checks hold")
    return (f"lesson {number} not passed yet: exercises 0 passed, {len(ids)} to do, 0 wrong of {len(ids)} "
            f"(to do: {', '.join(ids)}); its own checks hold")


@pytest.mark.parametrize("solutions", [False, True], ids=["as-found", "with-solutions"])
@pytest.mark.parametrize("name", LESSONS)
def test_lesson_runs(name, solutions, tmp_path):
    done, seconds = _run(name, solutions, tmp_path)
    number = name[:2]
    assert done.returncode == 0, (f"{name} failed (exit {done.returncode}, {seconds:.0f} s)\n"
                                  f"--- stderr (tail) ---\n{done.stderr[-4000:]}\n"
                                  f"--- stdout (tail) ---\n{done.stdout[-2000:]}")
    last = done.stdout.rstrip().splitlines()[-1]
    assert last == _last_line(number, solutions), f"{name} did not end with its summary: {last!r}"
    for exercise_id in exercises.of_lesson(number):
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


def _backward(accumulate=True, add_to_leaf=True, recursive=False):
    """A learner's run_backward with one of three plausible mistakes."""
    from tinyeffnet import Tensor

    def order_recursive(node, order, seen):
        if id(node) in seen:
            return
        seen.add(id(node))
        if node._ctx is not None:
            for p in node._ctx.parents:
                if p.requires_grad:
                    order_recursive(p, order, seen)
        order.append(node)

    def run_backward(root):
        if recursive:
            order = []
            order_recursive(root, order, set())
        else:
            order = _topological(root)
        bk = root.backend
        grads = {id(root): bk.full(root.shape, 1.0, root.dtype)}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._ctx is None:
                node.grad = Tensor(g, bk) if node.grad is None or not add_to_leaf else Tensor(bk.add(node.grad.data, g), bk)
                continue
            for parent, needed, pg in zip(node._ctx.parents, node._ctx.needs_grad, node._ctx.backward(g)):
                if needed and pg is not None:
                    grads[id(parent)] = bk.add(grads[id(parent)], pg) if accumulate and id(parent) in grads else pg
    return run_backward


def _topological(root):
    from tinyeffnet.engine.autograd import topological_order
    return topological_order(root)


def _unbroadcast_leading_only(grad, shape):
    extra = grad.ndim - len(shape)
    return grad.sum(axis=tuple(range(extra))) if extra else grad


def _unbroadcast_ones_only(grad, shape):
    grown = tuple(i for i, n in enumerate(shape) if n == 1 and i < grad.ndim and grad.shape[i] != 1)
    return grad.sum(axis=grown, keepdims=True) if grown else grad


def _conv(**mistake):
    """Lesson 04's window loops with one mistake: 'flip' the kernel, 'swap' the padding's
    ends, or 'offset' forgotten (rows read from the padded, not the unpadded, input)."""
    from tinyeffnet import Tensor
    sol = _solutions("04")

    def taps(x_shape, k, out_h, out_w, stride, padding):
        (top, bottom), (left, right) = padding
        if mistake.get("swap"):
            top, left = bottom, right
        n, h, w, _ = x_shape
        for b in range(n):
            for p in range(out_h):
                for q in range(out_w):
                    for a in range(k):
                        for c in range(k):
                            row = p * stride + a - (0 if mistake.get("offset") else top)
                            col = q * stride + c - (0 if mistake.get("offset") else left)
                            if 0 <= row < h and 0 <= col < w:
                                ka, kc = (k - 1 - a, k - 1 - c) if mistake.get("flip") else (a, c)
                                yield b, p, q, ka, kc, row, col

    def with_wrong_taps(fn):
        def run(*args):
            saved = sol._windows
            sol._windows = taps
            try:
                return fn(*args)
            finally:
                sol._windows = saved
        return run
    del Tensor
    return dict(forward=with_wrong_taps(sol.conv2d_windows), grad_input=with_wrong_taps(sol.conv_grad_input),
                grad_weight=with_wrong_taps(sol.conv_grad_weight))


def _bn_forward_unbiased(x, gamma, beta, eps):
    m = x.shape[0] * x.shape[1] * x.shape[2]
    centred = x - x.mean(axis=(0, 1, 2), keepdims=True)
    var = (centred * centred).sum(axis=(0, 1, 2), keepdims=True) * (1.0 / (m - 1))
    return centred * (var + eps) ** -0.5 * gamma + beta


def _bn_forward_eps_outside(x, gamma, beta, eps):
    centred = x - x.mean(axis=(0, 1, 2), keepdims=True)
    return centred / ((centred * centred).mean(axis=(0, 1, 2), keepdims=True) ** 0.5 + eps) * gamma + beta


def _bn_backward(constant_statistics=False, forget_xhat_term=False):
    def bn_backward(x, gamma, beta, dy, eps):
        axes = (0, 1, 2)
        m = x.shape[0] * x.shape[1] * x.shape[2]
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
        return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)
    return bn_backward


def _se(gate_first="swish", second="sigmoid"):
    from tinyeffnet import functional as F

    def se_forward(x, w1, b1, w2, b2):
        s = x.mean(axis=(1, 2), keepdims=True)
        h = F.conv2d(s, w1) + b1
        h = getattr(F, gate_first)(h) if gate_first else h
        return x * getattr(F, second)(F.conv2d(h, w2) + b2)
    return se_forward


def _mbconv(skip=True, se_anywhere="dw", call_block=False):
    from tinyeffnet import functional as F

    def mbconv_forward(block, x, key=None):
        if call_block:
            return block(x, key)
        spec = block.spec
        h = x
        if spec.expand_ratio != 1:
            h = F.swish(block.bn0(block.expand_conv(h)))
        h = F.swish(block.bn1(block.depthwise_conv(h)))
        se_at = spec.se_position if se_anywhere == "spec" else (se_anywhere if spec.se_position else None)
        if se_at == "dw":
            h = block.se(h) if spec.se_position == "dw" else h
        h = block.bn2(block.project_conv(h))
        if se_at == "end" and spec.se_position == "end":
            h = block.se(h)
        if skip and spec.has_skip:
            h = block.drop_connect(h, key) + x
        return h
    return mbconv_forward


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


def _train_step(keep_buffers=False, ignore_smoothing=False, ascend=False, no_key=False):
    def train_step(net, optimizer, state, images, labels, key, lr, label_smoothing):
        new, loss = _solutions("11").train_step(net, optimizer, state, images, labels, None if no_key else key, -lr if ascend else lr,
                                                0.0 if ignore_smoothing else label_smoothing)
        return (dict(new, buffers=state["buffers"]) if keep_buffers else new), loss
    return train_step


def _depthwise(flip=False, centred_padding=False):
    def depthwise_taps(x, w, stride, padding):
        k = w.shape[0]
        if centred_padding:
            padding = ((k // 2, k // 2), (k // 2, k // 2))
        return _solutions("13").depthwise_taps(x, w[::-1, ::-1] if flip else w, stride, padding)
    return depthwise_taps


def _bfloat16(add):
    def to_bfloat16(x):
        import jax
        import jax.numpy as jnp
        bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
        return jax.lax.bitcast_convert_type((bits + jnp.uint32(add)) & jnp.uint32(0xFFFF0000), jnp.float32)
    return to_bfloat16


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


def _nudge(x, index, eps):
    from tinyeffnet import Tensor
    values = x.to_flat()
    values[index] += eps
    return Tensor(values).reshape(*x.shape)


WRONG = {  # plausible mistakes, at least two per exercise: its check must say each is wrong
    "01.1": [lambda index, shape: sum(i * math.prod(shape[:k]) for k, i in enumerate(index)),  # column-major
             lambda index, shape: sum(i * n for i, n in zip(index, shape))],
    "01.2": [lambda values, shape, new: values * (math.prod(new) // len(values)),  # tiles the whole array
             lambda values, shape, new: [v for v in values for _ in range(math.prod(new) // len(values))]],
    "02.1": [lambda a, b: (3 * _sigmoid(a * b + a * a) * (1 - _sigmoid(a * b + a * a)) * b,
                           3 * _sigmoid(a * b + a * a) * (1 - _sigmoid(a * b + a * a)) * a),  # misses a*a's path
             lambda a, b: (_sigmoid(a * b + a * a) * (1 - _sigmoid(a * b + a * a)) * (b + 2 * a),
                           _sigmoid(a * b + a * a) * (1 - _sigmoid(a * b + a * a)) * a)],  # forgets the 3
    "02.2": [_wrong_tanh(_tanh_forgets_chain_rule), _wrong_tanh(_tanh_uses_the_input)],
    "02.3": [_backward(accumulate=False), _backward(recursive=True), _backward(add_to_leaf=False)],
    "02.4": [_unbroadcast_leading_only, _unbroadcast_ones_only],
    "03.1": [lambda x, eps: abs((math.exp(x + eps) - math.exp(x - eps)) / (2 * eps) - math.exp(x)),  # measured
             lambda x, eps: math.exp(x) * eps / 2,  # the one-sided error
             lambda x, eps: math.e * eps ** 2 / 6],  # x = 1's only
    "03.2": [lambda f, x, index, eps=1e-5: (f(_nudge(x, index, eps)).item() - f(x).item()) / eps,  # one-sided
             lambda f, x, index, eps=1e-5: (f(_nudge(x, index, eps)).item() - f(_nudge(x, index, -eps)).item()) / eps],
    "04.1": [lambda n, k, s: (k // 2, k // 2),  # PyTorch's symmetric padding
             lambda n, k, s: tuple(reversed(_solutions("04").same_padding(n, k, s)))],  # the odd pixel in front
    "04.2": [lambda x, dy, k, stride, padding: _conv(offset=True)["grad_weight"](x, dy, k, stride, padding),
             lambda x, dy, k, stride, padding: _conv(flip=True)["grad_weight"](x, dy, k, stride, padding)],
    "04.3": [lambda x, w, s, p: _conv(flip=True)["forward"](x, w, s, p),  # a true convolution
             lambda x, w, s, p: _conv(swap=True)["forward"](x, w, s, p)],  # padding's ends swapped
    "04.4": [lambda dy, w, shape, s, p: _conv(flip=True)["grad_input"](dy, w, shape, s, p),
             lambda dy, w, shape, s, p: _conv(offset=True)["grad_input"](dy, w, shape, s, p)],
    "05.1": [lambda h, w, c_in, c_out, k, stride: (h * w * c_in * k * k + h * w * c_in * c_out,
                                                   k * k * c_in + c_in * c_out),  # stride ignored
             lambda h, w, c_in, c_out, k, stride: (math.ceil(h / stride) * math.ceil(w / stride) * k * k * c_in * c_out,
                                                   k * k * c_in * c_out)],  # a full convolution's cost
    "06.1": [_bn_forward_unbiased, _bn_forward_eps_outside],
    "06.2": [_bn_backward(constant_statistics=True), _bn_backward(forget_xhat_term=True)],
    "07.1": [lambda x: max(x, 0.0) + math.log(1 + math.exp(-abs(x))),  # no overflow, but log instead of log1p
             lambda x: math.log(1 + math.exp(x))],  # overflows
    "07.2": [lambda x: _sigmoid(x),  # forgets the x s (1 - s) term
             lambda x: _sigmoid(x) * (1 - x * (1 - _sigmoid(x)))],  # a sign
    "08.1": [_se(gate_first="sigmoid", second="swish"), _se(gate_first=None)],
    "09.1": [_mbconv(skip=False), _mbconv(se_anywhere="dw"), _mbconv(call_block=True)],
    "10.1": [_wrong_seend, _seend_without_biases, _seend_by_building],
    "10.2": [lambda kernel, c_in, c_out, depthwise: math.sqrt(6 / (kernel * kernel * (c_in + c_out))),  # plain fans
             lambda kernel, c_in, c_out, depthwise: math.sqrt(6 / (kernel * kernel * c_in * 2)) if depthwise else
             math.sqrt(6 / (kernel * kernel * (c_in + c_out))) * (1 if kernel > 1 else 1.01)],
    "11.1": [lambda k, s: -((1 - s) * math.log(1 - s) + (k - 1) * (s / k) * math.log(s / k)),  # label gets 1 - s
             lambda k, s: -((1 - s + s / k) * math.log(1 - s + s / k) + k * (s / k) * math.log(s / k))],  # k, not k - 1
    "11.2": [lambda param, grad, velocity, lr, momentum, wd: (
        param - lr * (grad + wd * param + momentum * velocity), grad + wd * param + momentum * velocity),  # heavy ball
             lambda param, grad, velocity, lr, momentum, wd: (
        param - lr * (grad + momentum * (grad + momentum * velocity)) - lr * wd * param,
        grad + momentum * velocity)],  # decay outside the momentum
    "11.3": [_train_step(keep_buffers=True), _train_step(ignore_smoothing=True), _train_step(ascend=True),
             _train_step(no_key=True)],
    "12.1": [lambda x, slope: x.relu(), lambda x, slope: x.maximum(x * 0.1)],  # ignores slope
    "13.1": [_depthwise(flip=True), _depthwise(centred_padding=True)],
    "14.1": [_bfloat16(0), _bfloat16(0x8000)],  # truncation; round half up
    "15.1": [_paired(unpaired=True), _paired(z=True)],
    "16.1": ["nose@all", "seend@stage2-8", "nose@stage2-8"],  # the last two ARE seend@all and nose@all
    "16.2": [lambda base_count: base_count, _variant_without_end_se,
             lambda base_count: _seend_by_building(_solutions("16").my_variant, base_count)],
}
COUNTING = {"05.1", "10.1", "16.2"}  # the exercises that count by hand: at most three


def _context(exercise_id):
    return {"variant": _solutions("16").my_variant} if exercise_id == "16.2" else {}


def test_every_exercise_has_a_solution_and_two_wrong_answers():
    assert sorted(WRONG) == sorted(exercises.EXERCISES)
    assert all(len(wrongs) >= 2 for wrongs in WRONG.values())


def test_build_not_count():
    """At least eight exercises build a piece of the engine; at most three count."""
    builds = [i for i, e in exercises.EXERCISES.items() if e.builds]
    assert len(builds) >= 8, builds
    assert len(COUNTING) <= 3 and not COUNTING & set(builds)


@pytest.mark.parametrize("exercise_id", sorted(exercises.EXERCISES))
def test_exercise_check_passes_the_solution_and_rejects_wrong_answers(exercise_id):
    if exercise_id.startswith(("12.", "13.", "14.")):
        pytest.importorskip("jax")
    spec = exercises.EXERCISES[exercise_id]
    solution = getattr(_solutions(exercise_id[:2]), spec.name)
    assert spec.run(solution, **_context(exercise_id)) [0] == "passed"
    for i, wrong in enumerate(WRONG[exercise_id]):
        status, message = spec.run(wrong, **_context(exercise_id))
        assert status == "wrong" and message, (i, status, message)
    placeholder = {"my_variant": None, "Tanh": _todo_function()}.get(spec.name, _Todo())
    assert spec.run(placeholder, **_context(exercise_id)) == ("todo", spec.task)


@pytest.mark.parametrize("exercise_id", sorted(COUNTING))
def test_counting_exercises_refuse_the_model_building_shortcut(exercise_id):
    spec = exercises.EXERCISES[exercise_id]
    status, message = spec.run(WRONG[exercise_id][-1] if exercise_id != "05.1" else _separable_by_building,
                               **_context(exercise_id))
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
    spec = exercises.EXERCISES["01.1"]
    assert spec.run(lambda index, shape: None)[0] == "todo", "a function left returning None is not written yet"
    assert spec.run(...)[0] == "todo"
    status, message = spec.run(lambda index, shape: index[5])
    assert status == "wrong" and message.startswith("your code raised IndexError"), message
    assert exercises.EXERCISES["16.2"].run(lambda base: base)[0] == "todo", "16.2 waits for a variant (16.1)"


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
