"""Reference solutions of lesson 01's exercises."""
import itertools
import math


def flat_index(index, shape):
    position = 0
    for i, n in zip(index, shape):  # Horner's rule: each axis multiplies what came before by its size
        position = position * n + i
    return position


def expand_flat(values, shape, new_shape):
    out = []
    for index in itertools.product(*map(range, new_shape)):  # row-major order of the result
        source = tuple(0 if n == 1 else i for i, n in zip(index, shape))  # a grown axis always reads its one entry
        out.append(values[flat_index(source, shape)])
    assert len(out) == math.prod(new_shape)
    return out
