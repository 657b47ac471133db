"""What every lesson's checks share: the exercise record and its verdicts, and the ways a
check compares a learner's piece with the library's.

A check gets the learner's answer and returns a short note when it is right; raises
`Unfinished` when it is not written yet (a learner's `NotImplementedError`, a `None` or
`...` answer count the same); raises `Wrong` with what is wrong otherwise. A check that
passes promises the lesson that the piece can be plugged in: it runs the piece the way the
lesson will (its types, its shapes, under `no_grad` where the lesson runs it so), on random
inputs that reach every branch, against the library (its functions, autograd, finite
differences), never against a copy of the answer.
"""
import contextlib
import time
from dataclasses import dataclass, field


class Unfinished(Exception):
    """The answer is not written yet."""


class Wrong(Exception):
    """The answer is written, and wrong: the message says how."""


@dataclass
class Exercise:
    id: str
    name: str
    task: str
    check: object
    builds: str = ""  # what of the engine the learner writes ("" for a counting or reading exercise)
    answer: tuple = field(default=())  # "module:qualname" of the library code that IS the answer: a lesson
    #                                    shows it only once the exercise passes (course.Lesson.reveal)

    def run(self, answer, **context):
        """('passed' | 'todo' | 'wrong', message)."""
        if answer is None or answer is Ellipsis:
            return "todo", self.task
        try:
            note = self.check(answer, **context)
        except (Unfinished, NotImplementedError) as e:
            return "todo", (f"{e} " if isinstance(e, Unfinished) and str(e) else "") + self.task
        except Wrong as e:
            return "wrong", str(e)
        except AssertionError as e:
            return "wrong", str(e) or "an assertion failed"
        except RecursionError:
            return "wrong", "your code hit Python's recursion limit: walk the graph with an explicit stack"
        except Exception as e:  # the learner's code crashed: say where it hurts
            return "wrong", f"your code raised {type(e).__name__}: {e}"
        return "passed", note or ""


REGISTRY = {}  # exercise id -> Exercise, filled as each lesson's checks module is loaded


def exercise(exercise_id, name, task, builds="", answer=()):
    """Register the decorated function as the check of exercise `exercise_id`."""
    def register(check):
        REGISTRY[exercise_id] = Exercise(exercise_id, name, " ".join(task.split()), check, builds, tuple(answer))
        return check
    return register


# ---------------------------------------------------------------------------- values
def given(value):
    """A value the learner's code returned; None or ... mean it is not written yet."""
    if value is None or value is Ellipsis:
        raise Unfinished()
    return value


def close(got, want, rel=1e-9, abs_=1e-12):
    return abs(got - want) <= max(abs_, rel * abs(want))


def flat(value):
    """A Tensor, backend array or nested list as a flat list of floats."""
    from tinyeffnet import Tensor
    value = given(value)
    if isinstance(value, Tensor):
        return value.to_flat()
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in flat(item)] if value and isinstance(value[0], (list, tuple)) \
            else [float(v) for v in value]
    if hasattr(value, "tolist"):  # a JAX array
        values = value.tolist()
        return flat(values) if isinstance(values, list) else [float(values)]
    if hasattr(value, "shape"):  # a pure-Python backend array
        return python().to_flat(value)
    return [float(value)]


def shape(value):
    from tinyeffnet import Tensor
    if isinstance(value, Tensor):
        return value.shape
    if isinstance(value, (list, tuple)):
        return (len(value),) + (shape(value[0]) if value and isinstance(value[0], (list, tuple)) else ())
    return tuple(getattr(value, "shape", ()))


def same(label, got, want, rel=1e-9, abs_=1e-10):
    """Raise Wrong unless `got` (Tensor or nested lists) has `want`'s (a Tensor's) shape and values."""
    found = shape(given(got))
    if found != want.shape:
        raise Wrong(f"{label}: the result should have shape {want.shape}, yours has {found}")
    mine, theirs = flat(got), want.to_flat()
    worst = max((abs(a - b) for a, b in zip(mine, theirs)), default=0.0)
    if not all(close(a, b, rel, abs_) for a, b in zip(mine, theirs)):
        raise Wrong(f"{label}: differs from the library's (largest difference {worst:.2e})")
    return worst


def a_tensor(label, value, like):
    """Raise Wrong unless `value` is a Tensor with `like`'s shape, dtype and backend: what a lesson
    that plugs the piece into the engine needs (nested lists would crash it later)."""
    from tinyeffnet import Tensor
    value = given(value)
    if not isinstance(value, Tensor):
        raise Wrong(f"{label}: return a Tensor (the lesson plugs it into the engine), not a {type(value).__name__}")
    if value.shape != like.shape or value.dtype != like.dtype or value.backend is not like.backend:
        raise Wrong(f"{label}: expected a {like.dtype} Tensor of shape {like.shape} on the {like.backend.name} "
                    f"backend, yours is {value.dtype} of shape {value.shape} on {value.backend.name}")
    return value


def number(value):
    value = given(value)
    return value.item() if hasattr(value, "item") else float(value)


def python():
    from backends import get_backend
    return get_backend("python")


def random_shape(rng, rank, low=1, high=4):
    return tuple(rng.randint(low, high) for _ in range(rank))


# ---------------------------------------------------------------------------- guards
@contextlib.contextmanager
def counting_by_hand(what):
    """Counting exercises count by hand: any model, layer or meta-backend array made inside
    the learner's code is the shortcut the exercise is about, and is refused."""
    from backends import get_backend
    from tinyeffnet.nn.module import Module
    meta, init = get_backend("meta"), Module.__init__
    saved = meta.full

    def refuse(*args, **kwargs):
        raise Wrong(f"{what} must be counted by hand from the shapes, without building a model or layer "
                    "(build_model / the meta backend are the answer the check compares with)")
    Module.__init__, meta.full = refuse, refuse
    try:
        yield
    finally:
        Module.__init__, meta.full = init, saved


class ReadBudget:
    """A limit on how often the learner's code may read `ctx.parents` of a graph's Functions, and
    for how long it may run: a walk that visits shared tensors once per path (no visited set) is
    exponential, and must fail in milliseconds with a clear message, not hang the lesson."""

    def __init__(self, reads, seconds, message):
        self.left, self.deadline, self.message = reads, time.monotonic() + seconds, message
        self.classes = {}

    def watch(self, nodes):
        """Count reads of `.parents` on the contexts of `nodes` (the tape's tensors)."""
        for node in nodes:
            ctx = node._ctx
            if ctx is not None:
                ctx.__class__ = self._counted(type(ctx))

    def _counted(self, cls):
        if cls not in self.classes:
            budget = self

            def parents(ctx):
                budget.left -= 1
                if budget.left < 0 or time.monotonic() > budget.deadline:
                    raise Wrong(budget.message)
                return ctx.__dict__.get("parents", ())

            self.classes[cls] = type(cls.__name__, (cls,), dict(parents=property(parents)))
        return self.classes[cls]


# ---------------------------------------------------------------------------- plugging in
def as_function(forward, backward, name="Learners"):
    """A `Function` whose forward and backward are a learner's Tensor-level functions:
    forward(*tensors, **params) -> Tensor and backward(*tensors, dy, **params) -> one
    gradient (Tensor or None) per input. Inside, nothing is recorded on the tape."""
    from tinyeffnet import Function, Tensor, no_grad

    class Plugged(Function):
        def forward(self, *arrays, **params):
            self.inputs, self.params = [Tensor(a, self.backend) for a in arrays], params
            with no_grad():
                return self._array(given(forward(*self.inputs, **params)))

        def backward(self, grad):
            with no_grad():
                grads = given(backward(*self.inputs, Tensor(grad, self.backend), **self.params))
            if len(grads) != len(self.inputs):
                raise Wrong(f"the backward returned {len(grads)} gradients for {len(self.inputs)} inputs")
            return tuple(None if g is None else self._array(g) for g in grads)

        def _array(self, value):  # a Tensor or nested lists, as the exercises allow
            return value.data if isinstance(value, Tensor) else Tensor(value, self.backend).data

    Plugged.__name__ = Plugged.__qualname__ = name
    return Plugged
