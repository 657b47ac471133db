"""The data pipeline must run where numpy is absent (project rule: no numpy in data_tools)."""
import os
import pkgutil
import subprocess
import sys

import data_tools

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import sys, tempfile, importlib, pkgutil
sys.modules['numpy'] = None  # any 'import numpy' now raises ImportError
import data_tools
for module in pkgutil.iter_modules(data_tools.__path__):
    importlib.import_module('data_tools.' + module.name)
from data_tools import Loader, open_dataset
from data_tools.synthetic import make_image_folder
from data_tools.bench import run_data_bench
assert next(Loader(open_dataset('default', 'train', 8), 4).batches(0)).valid == 4
root = tempfile.mkdtemp()
make_image_folder(root, classes=2, train_per_class=2, val_per_class=1, size=(40, 30))
assert next(Loader(open_dataset(root, 'train', 8, autoaugment=True), 2).batches(0)).valid == 2
assert next(Loader(open_dataset(root, 'eval', 8), 2).batches(0)).valid == 2
assert run_data_bench(root, 0, 2, 8, 1)['images_per_s'] > 0
assert 'numpy' not in {name.split('.')[0] for name, m in sys.modules.items() if m is not None}
print('ok')
"""


def test_data_tools_runs_with_numpy_blocked():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_no_module_mentions_numpy():
    for module in pkgutil.iter_modules(data_tools.__path__):
        source = open(os.path.join(data_tools.__path__[0], module.name + ".py")).read()
        assert "import numpy" not in source and "from numpy" not in source, module.name
