"""Checkpoints: round trips on both backends, best/latest bookkeeping, clear errors, and
crash safety under kill -9 while saving."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from backends import get_backend
from tinyeffnet.training.checkpoint import (CheckpointError, best_checkpoint, checkpoint_meta, from_record,
                                            latest_checkpoint, load_checkpoint, resolve_checkpoint, to_record,
                                            verify_checkpoint)
from tinyeffnet.training.checkpoint_dir import save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = {"epoch": 2, "variant": "b0-se", "model": "efficientnet", "num_classes": 10,
         "config": {"lr": 0.1, "batch_size": 64, "augment": ["flip", "crop"]},
         "metrics": {"eval_top1": 0.25}}


def py():
    return get_backend("python")


def save(directory, step, metric=None, keep_last=3, higher_is_better=True):
    b = py()
    tensors = {"params/w": b.from_flat([float(step), 0.5, -1.0], (3,))}
    return save_checkpoint(directory, step, tensors, b, {"epoch": 0}, keep_last=keep_last,
                           best_metric=metric, higher_is_better=higher_is_better)


# ---------------------------------------------------------------- round trips
def _check_round_trip(b, dtypes, tmp_path):
    values = [0.1, -2.5, 3.0e-7, 1.0e6, 0.0, -0.0]
    tensors = {f"params/{d}": b.from_flat(values if d != "int32" else [1, -2, 3, 2**31 - 1, 0, -7],
                                          (2, 3), d) for d in dtypes}
    tensors["buffers/scalar"] = b.from_flat([4.25], (), dtypes[0])
    tensors["opt/0/trace/empty"] = b.from_flat([], (0, 3), dtypes[0])
    for name, x in tensors.items():  # the record layer alone
        back = from_record(b, to_record(b, x))
        assert b.dtype(back) == b.dtype(x) and b.to_flat(back) == b.to_flat(x), name
    path = save_checkpoint(tmp_path, 7, tensors, b, dict(STATE))
    loaded, state = load_checkpoint(path, b)
    assert sorted(loaded) == sorted(tensors)
    for name, x in tensors.items():
        assert b.dtype(loaded[name]) == b.dtype(x), name
        assert tuple(b.shape(loaded[name])) == tuple(b.shape(x)), name
        assert b.to_flat(loaded[name]) == b.to_flat(x), name
    return state


def test_round_trip_python(tmp_path):
    _check_round_trip(py(), ["float64", "int32"], tmp_path)


def test_round_trip_jax(tmp_path):
    pytest.importorskip("jax")
    _check_round_trip(get_backend("jax"), ["float32", "float64", "int32"], tmp_path)


def test_jax_float32_and_bfloat16_load_into_python(tmp_path):
    pytest.importorskip("jax")
    j, p = get_backend("jax"), py()
    w = j.from_flat([0.1, 0.2, 0.3, 0.4], (2, 2), "float32")
    half = j.from_flat([1.5, -0.25], (2,), "bfloat16")  # stored as float32
    save_checkpoint(tmp_path, 1, {"params/w": w, "params/h": half}, j, {})
    loaded, _ = load_checkpoint(tmp_path, p)
    assert p.dtype(loaded["params/w"]) == "float64"
    assert p.to_flat(loaded["params/w"]) == j.to_flat(w)  # float32 values, exactly
    assert p.to_flat(loaded["params/h"]) == [1.5, -0.25]
    back, _ = load_checkpoint(tmp_path, j)
    assert j.dtype(back["params/h"]) == "float32"


def test_state_round_trip(tmp_path):
    path = save_checkpoint(tmp_path, 1234, {}, py(), dict(STATE, step=1234), best_metric=0.25)
    assert os.path.basename(path) == "step-00001234.safetensors"
    _, state = load_checkpoint(path, py())
    checksums = {k: state.pop(k) for k in ("tensors_sha256", "meta_sha256")}
    assert state == dict(STATE, step=1234, format_version=3, best_metric=0.25, higher_is_better=True)
    assert checkpoint_meta(path) == dict(state, **checksums)


def test_state_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not JSON-serialisable"):
        save_checkpoint(tmp_path, 1, {}, py(), {"when": object()})
    with pytest.raises(CheckpointError, match="meta says step 5 but step=6"):
        save_checkpoint(tmp_path, 6, {}, py(), {"step": 5})
    with pytest.raises(CheckpointError, match="keep_last=0"):
        save_checkpoint(tmp_path, 6, {}, py(), {}, keep_last=0)
    assert latest_checkpoint(tmp_path) is None  # nothing half-written


# ---------------------------------------------------------------- best / latest / pruning
def test_best_symlink_follows_metric_and_pruning_keeps_it(tmp_path):
    metrics = {1: 0.1, 2: 0.5, 3: 0.3, 4: 0.2, 5: 0.4, 6: None}
    for step, m in metrics.items():
        save(tmp_path, step, m, keep_last=2)
    names = sorted(n for n in os.listdir(tmp_path) if n.startswith("step-"))
    assert names == ["step-00000002.safetensors", "step-00000005.safetensors",
                     "step-00000006.safetensors"]  # newest 2 + the best
    assert os.path.islink(tmp_path / "best.safetensors")
    assert best_checkpoint(tmp_path) == str(tmp_path / "step-00000002.safetensors")
    assert latest_checkpoint(tmp_path) == str(tmp_path / "step-00000006.safetensors")
    save(tmp_path, 7, 0.9, keep_last=2)  # a new best: the old best's file may now go
    assert best_checkpoint(tmp_path) == str(tmp_path / "step-00000007.safetensors")
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("step-")) == [
        "step-00000006.safetensors", "step-00000007.safetensors"]


def test_best_lower_is_better(tmp_path):
    for step, loss in [(1, 2.0), (2, 1.0), (3, 1.5)]:
        save(tmp_path, step, loss, higher_is_better=False)
    assert best_checkpoint(tmp_path).endswith("step-00000002.safetensors")


def test_resolve_checkpoint(tmp_path):
    work = tmp_path / "run"
    ckpts = work / "checkpoints"
    save(ckpts, 10)
    latest = save(ckpts, 20)
    assert resolve_checkpoint(latest) == latest
    assert resolve_checkpoint(work) == latest  # no best yet: latest
    assert resolve_checkpoint(ckpts) == latest
    best = save(ckpts, 30, metric=0.7)
    save(ckpts, 40, metric=0.1)
    assert resolve_checkpoint(work) == best
    assert resolve_checkpoint(work, prefer="latest").endswith("step-00000040.safetensors")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no checkpoints in"):
        resolve_checkpoint(empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "missing")


def test_a_flipped_bit_is_refused_naming_the_newest_good_checkpoint(tmp_path):
    b = py()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"params/w": b.from_flat([float(step)] * 64, (64,))}, b, {})
    newest = latest_checkpoint(tmp_path)
    blob = bytearray(open(newest, "rb").read())
    blob[-9] ^= 0x10  # one bit of the last tensor's bytes: still a well-formed file
    open(newest, "wb").write(bytes(blob))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(newest, b)
    message = str(err.value)
    assert "\n" not in message and newest in message and "is corrupt" in message
    assert "the newest older checkpoint that verifies is " + str(tmp_path / "step-00000002.safetensors") in message
    assert verify_checkpoint(tmp_path / "step-00000002.safetensors") and not verify_checkpoint(newest)


def test_a_non_finite_tensor_is_never_written(tmp_path):
    b = py()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(CheckpointError, match="holds a NaN or an infinity"):
            save_checkpoint(tmp_path, 1, {"buffers/bn.moving_var": b.from_flat([1.0, bad], (2,))}, b, {})
    assert latest_checkpoint(tmp_path) is None and not os.listdir(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no_metadata", "empty"])
def test_corrupt_file_error_is_one_line_and_names_file(tmp_path, damage):
    path = save(tmp_path, 1)
    blob = open(path, "rb").read()
    if damage == "truncate":
        blob = blob[:-5]
    elif damage == "garbage":
        blob = b"\x89PNG not a checkpoint at all" * 3
    elif damage == "empty":
        blob = b""
    else:
        import safetensors
        blob = safetensors.serialize({}, metadata={"other": "x"})
    with open(path, "wb") as f:
        f.write(blob)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, py())
    message = str(err.value)
    assert "\n" not in message and path in message and "not a readable tinyeffnet checkpoint" in message
    assert err.value.__cause__ is None  # no chained traceback from inside safetensors/json
    assert err.value.__context__ is None or err.value.__suppress_context__


def test_temp_leftover_is_ignored_and_cleaned(tmp_path):
    first = save(tmp_path, 1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    leftover = tmp_path / f".step-00000009.safetensors.tmp-{dead}-0123abcd"
    leftover.write_bytes(b"half a checkpoint")
    assert latest_checkpoint(tmp_path) == first
    save(tmp_path, 2)
    assert not leftover.exists()


# ---------------------------------------------------------------- the header is verified too
def _edit_header(path, edit):
    """Rewrite a safetensors file's JSON header with `edit(header, meta)` applied, the tensor bytes
    untouched: a well-formed file whose header says something else."""
    import json
    import struct
    blob = open(path, "rb").read()
    size = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + size])
    meta = json.loads(header["__metadata__"]["tinyeffnet"])
    edit(header, meta)
    header["__metadata__"]["tinyeffnet"] = json.dumps(meta)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + blob[8 + size:])


def _rename(header, meta):
    header["params/v"] = header.pop("params/w")


def _reshape(header, meta):
    header["params/w"]["shape"] = [3, 2]


def _retype(header, meta):
    header["params/w"]["dtype"] = "I64"  # the same 8 bytes per value, read as integers


def _set(key, value):
    def edit(header, meta):
        meta[key] = value
    return edit


def _drop(key):
    def edit(header, meta):
        del meta[key]
    return edit


TAMPERED = {"renamed tensor": (_rename, "is corrupt: its tensors"), "shape": (_reshape, "is corrupt: its tensors"),
            "dtype": (_retype, "is corrupt: its tensors"),
            "variant": (_set("variant", "nose@all"), "is corrupt: its metadata"),
            "num_classes": (_set("num_classes", 9), "is corrupt: its metadata"),
            "width": (_set("width", 0.5), "is corrupt: its metadata"),
            "bn_eps": (_set("bn_eps", 1e-5), "is corrupt: its metadata"),
            "padding": (_set("padding", "symmetric"), "is corrupt: its metadata"),
            "tensor checksum": (_set("tensors_sha256", "0" * 64), "is corrupt: its metadata"),
            "no format_version": (_drop("format_version"), "has no format_version"),
            "format 2 claimed": (_set("format_version", 2), "carries format 3's metadata checksum"),
            "format 1 claimed": (_set("format_version", 1), "carries no checksum")}


@pytest.mark.parametrize("what", TAMPERED)
def test_a_tampered_header_is_refused_in_one_line(what, tmp_path):
    b = py()
    meta = dict(variant="base", model="b0", num_classes=10, width=0.1, depth=0.1, padding="same", bn_eps=1e-3)
    good = save_checkpoint(tmp_path, 1, {"params/w": b.from_flat([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3))}, b, meta)
    path = save_checkpoint(tmp_path, 2, {"params/w": b.from_flat([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3))}, b, meta)
    edit, reason = TAMPERED[what]
    _edit_header(path, edit)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, b)
    message = str(err.value)
    assert "\n" not in message and path in message and reason in message, message
    assert not verify_checkpoint(path) and verify_checkpoint(good)
    if "is corrupt" in reason or "format 3's" in reason:
        assert "the newest older checkpoint that verifies is " + good in message
    if "tensors" not in reason:  # the metadata alone is refused too, without reading the tensors
        with pytest.raises(CheckpointError, match=reason):
            checkpoint_meta(path)


def test_an_untampered_header_rewritten_the_same_still_loads(tmp_path):
    """The tampering tests' rewriting keeps a file readable when nothing is changed."""
    b = py()
    path = save_checkpoint(tmp_path, 1, {"params/w": b.from_flat([1.0, 2.0], (2,))}, b, {"variant": "base"})
    _edit_header(path, lambda header, meta: None)
    assert verify_checkpoint(path) and b.to_flat(load_checkpoint(path, b)[0]["params/w"]) == [1.0, 2.0]


FORMAT2 = os.path.join(ROOT, "tests", "fixtures", "format2.seend-all.w010.safetensors")
# Written by save_checkpoint of format 2 (commit b8a0b77's checkpoint.py): build_model("seend@all", "b0", 10,
# "xavier", 0, backend="jax", width=0.1, depth=0.1)'s parameters and buffers at step 7.


def test_a_format_2_checkpoint_loads_its_tensors_verified_and_says_its_metadata_is_not(caplog, tmp_path):
    from tinyeffnet.training.state import load_model
    assert checkpoint_meta(FORMAT2)["format_version"] == 2 and verify_checkpoint(FORMAT2)
    with caplog.at_level("WARNING", logger="tinyeffnet.training.checkpoint"):
        net, meta = load_model(FORMAT2, "python")
    assert (net.variant, net.num_classes, meta["step"]) == ("seend@all", 10, 7)
    warned = [r.getMessage() for r in caplog.records if FORMAT2 in r.getMessage()]
    assert len(warned) == 1 and "format-2" in warned[0] and "metadata" in warned[0] and "is not" in warned[0]
    # what format 2 does cover is still checked: a renamed tensor is refused
    renamed = tmp_path / "renamed.safetensors"
    renamed.write_bytes(open(FORMAT2, "rb").read())

    def rename(header, meta):
        header["params/fc.bias2"] = header.pop("params/fc.bias")
    _edit_header(renamed, rename)
    with pytest.raises(CheckpointError, match="is corrupt: its tensors"):
        load_checkpoint(str(renamed), py())


# ---------------------------------------------------------------- kill -9
WRITER = r"""
import random, sys
sys.path.insert(0, {root!r})
from backends import get_backend
from backends.python_backend import PyArray
from tinyeffnet.training.checkpoint import latest_checkpoint, checkpoint_meta
from tinyeffnet.training.checkpoint_dir import save_checkpoint
directory, b = sys.argv[1], get_backend("python")
latest = latest_checkpoint(directory)
step = checkpoint_meta(latest)["step"] + 1 if latest else 1
big = PyArray([0.5] * 250_000, (250_000,), "float64")  # 2 MB
while True:
    tensors = {{"params/big": big, "params/step": b.from_flat([float(step)], (1,))}}
    save_checkpoint(directory, step, tensors, b, {{"epoch": step}}, keep_last=2,
                    best_metric=random.random())
    step += 1
"""


def test_kill_9_while_saving_leaves_loadable_checkpoints(tmp_path):
    script = WRITER.format(root=ROOT)
    rng = random.Random(0)
    b = py()
    temps_seen = 0
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
        try:
            deadline = time.time() + 120  # a hang guard, generous on a loaded machine
            start = latest_checkpoint(tmp_path)
            while latest_checkpoint(tmp_path) == start:  # wait for this writer's first save
                assert proc.poll() is None, "the writer died on its own"
                assert time.time() < deadline, "the writer saved nothing in 120 s"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        tensors, state = load_checkpoint(latest_checkpoint(tmp_path), b)
        assert b.to_flat(tensors["params/step"]) == [float(state["step"])]
        assert tuple(b.shape(tensors["params/big"])) == (250_000,)
        if os.path.lexists(tmp_path / "best.safetensors"):
            best = best_checkpoint(tmp_path)
            assert best is not None, "best.safetensors dangles"
            assert checkpoint_meta(best)["best_metric"] is not None
        temps_seen += any(".tmp-" in n for n in os.listdir(tmp_path))
    print(f"{temps_seen} of 8 kills left a temp file behind")
    # The next save cleans whatever temp files the killed writers left behind.
    save(tmp_path, checkpoint_meta(latest_checkpoint(tmp_path))["step"] + 1)
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_runs_with_numpy_blocked(tmp_path):
    script = f"""
import sys
sys.modules['numpy'] = None  # any 'import numpy' now raises ImportError
sys.path.insert(0, {ROOT!r})
from backends import get_backend
from tinyeffnet.training.checkpoint import load_checkpoint
from tinyeffnet.training.checkpoint_dir import save_checkpoint
b = get_backend('python')
save_checkpoint({str(tmp_path)!r}, 1, {{'params/w': b.from_flat([1.0, 2.0], (2,))}}, b, {{}}, best_metric=1.0)
tensors, state = load_checkpoint({str(tmp_path)!r}, b)
assert b.to_flat(tensors['params/w']) == [1.0, 2.0] and state['step'] == 1
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
