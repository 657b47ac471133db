"""The package layout keeps its promises: the top level holds the commands and the Python API,
library packages never import a command module,
commands never import each other, every runtime implements the whole interface, and one
forgotten backend= is an error, not a silent copy on another backend."""
import ast
import os

import pytest

from tinyeffnet import Tensor
from tinyeffnet.nn import Conv2d

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tinyeffnet")
COMMANDS = {"train", "evaluate", "predict", "summary", "ablation", "bench", "convert", "probe"}
PYTHON_API = {"api", "inference"}  # what `tinyeffnet.create_model / load / classify` run


def _imports(path, module):
    """Absolute names of every tinyeffnet module `path` (the module `module`) imports."""
    package = module.rsplit(".", 1)[0] if not path.endswith("__init__.py") else module
    tree = ast.parse(open(path, encoding="utf-8").read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                head = ".".join(base + ([node.module] if node.module else []))
            else:
                head = node.module or ""
            names.add(head)
            names.update(f"{head}.{a.name}" for a in node.names)
    return {n for n in names if n.startswith("tinyeffnet")}


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield path, rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def test_the_top_level_modules_are_the_commands_the_python_api_and_private_helpers():
    top = {n[:-3] for n in os.listdir(PACKAGE) if n.endswith(".py")}
    assert top - {"__init__"} - {n for n in top if n.startswith("_")} == COMMANDS | PYTHON_API


@pytest.mark.parametrize("path,module", sorted(_modules()))
def test_no_library_module_imports_a_command(path, module):
    commands = {f"tinyeffnet.{c}" for c in COMMANDS}
    imported = _imports(path, module) & commands
    if module in commands:
        assert not imported - {module}, f"the command {module} imports the command(s) {sorted(imported)}"
    else:
        assert not imported, f"the library module {module} imports the command(s) {sorted(imported)}"


def test_both_runtimes_implement_the_whole_interface():
    from tinyeffnet.training.runtime import JaxRuntime, PythonRuntime, Runtime
    required = Runtime.__abstractmethods__
    assert {"make_optimizer", "compile_train_step", "compile_eval_step", "put_state", "put_batch", "fetch",
            "to_host"} <= required
    for cls in (PythonRuntime, JaxRuntime):
        assert not cls.__abstractmethods__, f"{cls.__name__} leaves {sorted(cls.__abstractmethods__)} undefined"


def test_mixing_backends_is_one_clear_error():
    pytest.importorskip("jax")
    conv = Conv2d(3, 4, 3)  # no backend=: the default backend, python
    x = Tensor.zeros((1, 5, 5, 3), backend="jax")
    with pytest.raises(ValueError, match="same backend="):
        conv(x)
