"""Checks of lesson 01's exercises: a flat index, and the backend's expand on flat storage."""
import itertools
import math
import random

from .common import Wrong, exercise, given, python, random_shape


@exercise("01.1", "flat_index", """Write flat_index(index, shape): the position of element `index` (a tuple
          such as (n, h, w, c)) in the flat row-major list of an array of `shape`.""")
def check_flat_index(flat_index):
    from tinyeffnet import Tensor
    rng = random.Random(101)
    shapes = [(5,), (2, 3), (3, 1, 5)] + [random_shape(rng, rank, 1, 5) for rank in (2, 3, 4, 4)]
    for shape in shapes:
        values = Tensor(python().from_flat(list(range(math.prod(shape))), shape)).tolist()
        for index in itertools.product(*map(range, shape)):
            want = values
            for i in index:
                want = want[i]
            got = given(flat_index(index, shape))
            if got != int(want):
                raise Wrong(f"flat_index({index}, {shape}) = {got}, but that element sits at {int(want)}")
    return f"right for every element of {len(shapes)} shapes"


@exercise("01.2", "expand_flat", """Write expand_flat(values, shape, new_shape): the backend primitive
          `expand` on flat row-major storage. `values` holds an array of `shape`; every axis of size 1 may
          grow to new_shape's size there (same rank), its values repeated along it. Return the flat list of
          the expanded array. Hint: for each position of the result, find the source position with
          flat_index, reading index 0 on the grown axes.""", builds="the backend's expand (broadcasting)",
          answer=("backends.python_backend:PythonBackend._expand",))
def check_expand_flat(expand_flat):
    py = python()
    rng = random.Random(102)
    cases = [((1, 3), (2, 3)), ((2, 1), (2, 4)), ((1, 2, 1), (3, 2, 2)), ((2, 1, 3), (2, 4, 3)), ((3, 1), (3, 1))]
    for _ in range(6):
        new_shape = random_shape(rng, rng.randint(2, 4), 1, 4)
        shape = tuple(1 if rng.random() < 0.5 else n for n in new_shape)
        cases.append((shape, new_shape))
    for shape, new_shape in cases:
        values = [round(rng.uniform(-9, 9), 3) for _ in range(math.prod(shape))]
        want = py.to_flat(py.expand(py.from_flat(values, shape), new_shape))
        got = given(expand_flat(list(values), shape, new_shape))
        if not isinstance(got, (list, tuple)) or any(isinstance(v, (list, tuple)) for v in got):
            raise Wrong(f"{shape} -> {new_shape}: return a flat list of numbers, not {type(got).__name__}"
                        + (" of lists" if isinstance(got, (list, tuple)) else ""))
        got = [float(v) for v in got]
        if got != want:
            raise Wrong(f"{shape} -> {new_shape}: the backend gives {want[:12]}{'...' if len(want) > 12 else ''}, "
                        f"yours {got[:12]}{'...' if len(got) > 12 else ''}")
    return f"equal to the python backend's expand on {len(cases)} shapes, grown axes first, middle and last"
