# %% [markdown]
# # Lesson 12: tracing, or how jit records our tape
#
# The pure-Python backend is for reading; it would need weeks for one ImageNet epoch.
# `python -m tinyeffnet.train --backend jax` runs the *same* layer code and the *same*
# autograd on JAX, and gets its speed from one idea:
#
# **Trace once, run compiled.** `jax.jit(f)` calls `f` once with stand-in "tracer" values.
# Every operation on a tracer records an equation instead of computing. Our autograd's
# backward walk (lesson 02) is ordinary Python calling backend primitives, so it is
# recorded too: forward, backward and update become one flat program, which XLA compiles.
# Later calls run only the program; the Python tape costs nothing per step.
#
# That claim deserves better than a sentence. We build a tracer of our own in ten lines
# (the idea of JAX's "autodidax"), run our real autograd on it, and read the program it
# records. Then we let JAX do the same to our convolution code.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks
course.jax_on_the_cpu()  # JAX_PLATFORMS=cpu before JAX starts: this lesson runs on the CPU, whatever the machine has

lesson = course.Lesson("12")
ROOT = course.ROOT

import collections

from backends import get_backend
from backends.python_backend import PyArray
from tinyeffnet import Tensor, functional as F
from tinyeffnet.plotting.graph import draw_graph

py = get_backend("python")

# %% [markdown]
# ## A tracer in ten lines
#
# A `Tracer` stands in for a number. `+` and `*` on it do not compute: they append an
# equation (output name, operation, inputs) to a program and return a new Tracer that
# names the result. Constants (plain floats) stay values in the equations.

# %%
class Tracer:
    """Stands in for a number: arithmetic on it records an equation instead of computing."""
    program = []  # the equations recorded so far: (output name, op, input names or constants)

    def __init__(self, name):
        self.name = name

    def record(self, op, *inputs):
        out = Tracer(f"v{len(Tracer.program)}")
        Tracer.program.append((out.name, op, [i.name if isinstance(i, Tracer) else i for i in inputs]))
        return out

    __add__ = lambda self, other: self.record("add", self, other)
    __radd__ = lambda self, other: self.record("add", other, self)
    __mul__ = lambda self, other: self.record("mul", self, other)
    __rmul__ = lambda self, other: self.record("mul", other, self)


def run(program, inputs):
    """Evaluate a recorded program on numbers: no Tensor, no Function, no tape."""
    values = dict(inputs)
    for out, op, args in program:
        a, b = (values[i] if isinstance(i, str) else i for i in args)
        values[out] = a + b if op == "add" else a * b
    return values


# %% [markdown]
# Traced on a plain Python function, f(x) = x x + 3 x:

# %%
Tracer.program = []
out = (lambda x: x * x + 3.0 * x)(Tracer("x"))
plain_program = list(Tracer.program)
for equation in plain_program:
    print(equation)
print("output:", out.name, "| at x = 2:", run(plain_program, {"x": 2.0})[out.name])

# %% [markdown]
# ## Our autograd, traced
#
# Now the real thing. The pure-Python backend keeps its values in a flat list and
# computes with `+` and `*` on whatever is in it (lesson 01). Put a Tracer in that list,
# and the library's `Tensor`, its `Mul` and `Add` Functions, and `backward` run unchanged:
# every primitive they call records equations.

# %%
Tracer.program = []
x = Tensor(PyArray([Tracer("x")], ()), py, requires_grad=True)  # a Tensor whose one value is a Tracer
f = x * x + x * 3.0
forward_equations = len(Tracer.program)
f.backward()  # lesson 02's walk over the tape, unchanged
program = list(Tracer.program)
f_name, grad_name = f.data.data[0].name, x.grad.data.data[0].name
lesson.table(["equation", "recorded by"],
             [(f"{out} = {op}({', '.join(map(str, args))})", "forward" if i < forward_equations else "backward")
              for i, (out, op, args) in enumerate(program)])
print(f"f is {f_name}, df/dx is {grad_name}")

# %% [markdown]
# Read the program: v0 to v2 are the forward pass; v3 to v6 are `backward`: the seed
# gradient 1.0 times each `Mul`'s other input, then the accumulation of the two uses of x
# (lesson 02), and the x * 3.0 branch, whose gradient 1.0 * 3.0 involved no tracer, so it
# was computed while tracing and is a constant in the program (XLA does the same
# "constant folding"). The tape, the Function contexts and the topological sort are all
# gone: only arithmetic is left.
#
# So the program computes f and f' at any x with no autograd at all:

# %%
replayed = {x_value: run(program, {"x": x_value}) for x_value in (2.0, 5.0, -1.5)}
for x_value, values in replayed.items():
    print(f"x = {x_value}: f = {values[f_name]} (x^2 + 3x = {x_value ** 2 + 3 * x_value}), "
          f"df/dx = {values[grad_name]} (2x + 3 = {2 * x_value + 3})")


def program_graph(program, names):
    nodes = [dict(id="x", lines=["x", "input"], kind="box")]
    for out, op, args in program:
        lines = [f"{out} = {op}", ", ".join(str(a) for a in args)] + ([names[out]] if out in names else [])
        nodes.append(dict(id=out, lines=lines, kind="op"))
    edges = [(a, out) for out, _, args in program for a in dict.fromkeys(args) if isinstance(a, str)]
    return draw_graph(nodes, edges, "the program traced from f = x*x + x*3.0 and f.backward()")


lesson.show(program_graph(program, {f_name: "= f", grad_name: "= df/dx"}), "traced_program")

# %% [markdown]
# Compare this picture with lesson 02's: there, a tape of Tensors and Functions that
# `backward` walks every time; here, one flat program for forward and backward together.
#
# ## JAX does the same to our real code
#
# JAX's tracers are arrays of a known shape and dtype, and `jax.numpy` / `jax.lax` calls on
# them record equations; the record is a *jaxpr*. The JAX backend implements every
# primitive with such calls (lesson 13), so a loss written with our Tensors and
# differentiated with OUR backward traces the same way. A counter shows how often the
# Python body runs.

# %%
import jax
import jax.numpy as jnp

jb = get_backend("jax")
print("jax", jax.__version__, "devices:", jax.devices())



python_runs = collections.Counter()


def loss_and_grad(x, w):
    python_runs["loss_and_grad"] += 1
    wt = Tensor(w, jb, requires_grad=True)
    loss = F.swish(F.conv2d(Tensor(x, jb), wt, stride=2)).mean()
    loss.backward()
    return loss.data, wt.grad.data


x = course.randn(jb, 0, (2, 8, 8, 3))
w = course.randn(jb, 1, (3, 3, 3, 4), 0.3)
compiled_fn = jax.jit(loss_and_grad)
for _ in range(3):
    loss_value, grad_w = compiled_fn(x, w)
runs_for_three_calls = python_runs["loss_and_grad"]
print("three calls, the Python body ran", runs_for_three_calls, "time")

jaxpr = jax.make_jaxpr(loss_and_grad)(x, w)
print(jaxpr)  # the whole traced program: our forward AND our backward, one equation per line
ops = collections.Counter(eqn.primitive.name for eqn in jaxpr.jaxpr.eqns)
print(len(jaxpr.jaxpr.eqns), "operations in the traced program:", dict(ops))
convolutions = ops["conv_general_dilated"] + ops["dot_general"]
print(f"convolutions: {ops['conv_general_dilated']} as conv_general_dilated, {ops['dot_general']} as matrix products")

# %% [markdown]
# Three calls, one trace. Read the jaxpr printed above: its inputs `a` and `b` are x and
# w (typed by shape and dtype, no values), every line one primitive with its result's
# type, and its outputs the loss and w's gradient. It holds two convolutions, the forward one and the
# weight gradient of lesson 04 (as `conv_general_dilated`, or as a matrix product over
# image patches, `dot_general`, where the JAX backend finds that faster: see
# `backends/jax_backend.py`), the sigmoid of swish twice (forward, and recomputed in its
# lean backward, lesson 07), and the elementwise and data-movement rest. There is no
# input-gradient convolution: x does not require a gradient, so `Conv2d.backward` skips it
# (`needs_grad`), and the program never computes it. Just as with our tracer, what the
# Python decided while tracing (which gradients are needed, in which order) is baked in.
#
# Is it right? Two independent references: the pure-Python backend on the same numbers,
# and `jax.grad` (the library never uses JAX's autodiff; the tests and this lesson use it
# only as an oracle).

# %%
def python_reference(x, w):
    xt = Tensor(py.from_flat(x.reshape(-1).tolist(), x.shape), py)
    wt = Tensor(py.from_flat(w.reshape(-1).tolist(), w.shape), py, requires_grad=True)
    loss = F.swish(F.conv2d(xt, wt, stride=2)).mean()
    loss.backward()
    return loss.item(), wt.grad.to_flat()


ref_loss, ref_grad = python_reference(x, w)
oracle = jax.grad(lambda w: jax.nn.silu(jax.lax.conv_general_dilated(
    x, w, (2, 2), [(0, 1), (0, 1)], dimension_numbers=("NHWC", "HWIO", "NHWC"))).mean())(w)
diff_python = max(abs(a - b) for a, b in zip(grad_w.reshape(-1).tolist(), ref_grad))
diff_oracle = float(jnp.max(jnp.abs(grad_w - oracle)))
print(f"loss: jit {float(loss_value):.7f}, python {ref_loss:.7f}")
print(f"gradient: largest difference to python {diff_python:.1e}, to jax.grad {diff_oracle:.1e} (float32)")

# %% [markdown]
# ## What tracing cannot do: decide on a value
#
# A tracer has no value, so Python cannot branch on it: `if x > 0` needs a True or False
# that does not exist yet. Our tracer would fail the same way (it has no `__gt__`); JAX's
# says so:

# %%
def relu_with_if(a):
    return a if a > 0 else 0.0 * a


try:
    jax.jit(relu_with_if)(jnp.float32(2.0))
    branch_error = None
except jax.errors.ConcretizationTypeError as e:
    branch_error = type(e).__name__
    print(f"{branch_error}: {str(e).splitlines()[0]}")

# %% [markdown]
# This is why the layer code keeps three rules: parameters passed in as arguments
# (`Module.bind`), random keys passed in explicitly, and no `.item()` or value-dependent
# Python branch inside a step. A choice per element is an operation on arrays instead
# (`maximum`, `where`, `compare`), recorded like any other.
#
# ### Exercise 12.1: a leaky ReLU that jit can trace
#
# Write `leaky_relu(x, slope)` on Tensors: x where x > 0, slope * x elsewhere (for
# 0 < slope < 1), with Tensor operations only. The check runs it under `jax.jit` on the
# JAX backend, with our backward, for three slopes, and compares values and gradients.

# %%
# EXERCISE 12.1: your code here
def leaky_relu(x, slope):
    raise NotImplementedError


# %%
lesson.exercise("12.1", leaky_relu)

# %% [markdown]
# Lesson 13 takes the same step to a whole EfficientNet training step: one compiled
# program, its buffers donated, sharded over devices, in bfloat16.
#
# ## Checks

# %%
assert [op for _, op, _ in plain_program] == ["mul", "mul", "add"]
assert run(plain_program, {"x": 2.0})[out.name] == 10.0
assert forward_equations == 3 and len(program) == 7, program
assert program[-1] == ("v6", "add", ["v5", 3.0]), "the constant branch of the gradient was folded while tracing"
assert all(v[f_name] == x_value ** 2 + 3 * x_value and v[grad_name] == 2 * x_value + 3
           for x_value, v in replayed.items()), "the recorded program computes f and f' with no tape"
assert runs_for_three_calls == 1, "jit traces the Python body once"
assert convolutions == 2 and ops["logistic"] == 2, "forward conv and its weight gradient; swish's sigmoid twice"
assert abs(float(loss_value) - ref_loss) < 1e-5 and diff_python < 1e-5 and diff_oracle < 1e-5
assert branch_error is not None, "a Python branch on a traced value cannot be decided"
lesson.finish()
