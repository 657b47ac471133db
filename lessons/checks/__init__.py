"""The course's exercises and their checks: one module per lesson, `checks/NN_name.py` beside
`solutions/NN_name.py`, and what they share in `checks/common.py`.

An exercise has an id ("04.2": lesson 04, second exercise), the name of what the learner
writes (a function, a class or a value), the task, and a check (see common.py). A lesson's
module is loaded the first time one of its exercises is asked for, so a lesson imports only
its own checks.

    checks.of_lesson("04")  -> ["04.1", "04.2", "04.3", "04.4"]
    checks.get("04.2")      -> its Exercise: .name, .task, .builds, .answer, .run(answer)
    checks.every()          -> every exercise of the course, by id
"""
import importlib.util
import os
import re
import sys

from .common import REGISTRY, Exercise, Unfinished, Wrong, as_function  # noqa: F401  (the course's interface)

HERE = os.path.dirname(os.path.abspath(__file__))
_LOADED = set()


def _modules():
    return {name[:2]: name for name in sorted(os.listdir(HERE)) if re.fullmatch(r"\d\d_\w+\.py", name)}


def load(number):
    """Import checks/NN_*.py for lesson `number` (once); a lesson without exercises has none."""
    if number in _LOADED:
        return
    name = _modules().get(number)
    if name is not None:
        spec = importlib.util.spec_from_file_location(f"{__name__}.lesson{number}", os.path.join(HERE, name))
        module = importlib.util.module_from_spec(spec)
        module.__package__ = __name__
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    _LOADED.add(number)


def of_lesson(number):
    load(number)
    return sorted(i for i in REGISTRY if i.startswith(number + "."))


def get(exercise_id):
    load(exercise_id[:2])
    return REGISTRY[exercise_id]


def every():
    for number in _modules():
        load(number)
    return dict(sorted(REGISTRY.items()))
