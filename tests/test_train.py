"""The trainer end to end on the embedded data, with a small network so JAX compiles fast:
outputs, resume on the same trajectory, kill -9 safety, NaN stop, cross-backend checkpoints,
evaluate / predict, and one-line errors."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("jax")

from tinyeffnet.training.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--backend", "jax", "--variant", "base", "--width", "0.25", "--depth", "0.1", "--image-size", "16",
         "--batch-size", "16", "--epochs", "1", "--eval-examples", "64", "--workers", "0", "--log-every", "1"]


def run(args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          **kw)


def train(workdir, *extra, timeout=600):
    out = run(["tinyeffnet.train"] + SMALL + ["--workdir", str(workdir)] + list(extra), timeout)
    return out


def params_of(path):
    from backends import get_backend
    tensors, state = load_checkpoint(path, get_backend("python"))
    return {k: get_backend("python").to_flat(v) for k, v in tensors.items() if not k.startswith("opt/")}, state


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run") / "w"
    out = train(workdir, "--max-steps", "6", "--checkpoint-every", "3")
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir, out


def test_a_run_writes_metrics_plot_summary_and_checkpoints(finished_run):
    workdir, out = finished_run
    summary = json.load(open(workdir / "summary.json"))
    assert {"top1", "top5", "images_per_s", "seconds"} <= set(summary)
    assert 0.0 <= summary["top1"] <= summary["top5"] <= 1.0 and summary["steps"] == 6
    records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert all({"loss", "lr", "top1", "top5", "grad_norm", "images_per_s"} <= set(r) for r in steps)
    assert all(r["grad_norm"] > 0 for r in steps)
    assert any(r["kind"] == "epoch" and "eval_top1" in r for r in records)
    from PIL import Image
    assert Image.open(workdir / "curves.png").size[0] > 400
    assert latest_checkpoint(workdir / "checkpoints").endswith("step-00000006.safetensors")
    assert (workdir / "checkpoints" / "best.safetensors").exists()
    last_line = out.stdout.strip().splitlines()[-1]
    assert last_line.startswith("done: base top-1 "), last_line
    assert "it/s" in out.stderr or "step/s" in out.stderr or "s/step" in out.stderr  # tqdm progress


def test_resume_continues_the_same_trajectory(finished_run, tmp_path):
    reference, _ = finished_run
    first = train(tmp_path / "r", "--max-steps", "3", "--checkpoint-every", "3")
    assert first.returncode == 0, first.stderr[-3000:]
    second = train(tmp_path / "r", "--max-steps", "6", "--checkpoint-every", "3", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout
    want, _ = params_of(latest_checkpoint(reference / "checkpoints"))
    got, state = params_of(latest_checkpoint(tmp_path / "r" / "checkpoints"))
    assert state["step"] == 6
    for name, values in want.items():
        assert got[name] == values, f"{name} differs after resume"
    steps = [json.loads(l)["step"] for l in open(tmp_path / "r" / "metrics.jsonl") if '"kind": "step"' in l]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_kill_9_leaves_a_loadable_checkpoint(tmp_path):
    workdir = tmp_path / "k"
    cmd = [sys.executable, "-m", "tinyeffnet.train"] + SMALL + ["--workdir", str(workdir), "--max-steps", "400",
                                                                "--checkpoint-every", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while latest_checkpoint(workdir / "checkpoints") is None:
            assert time.time() < deadline and proc.poll() is None, "no checkpoint was written"
            time.sleep(0.2)
        time.sleep(random.uniform(0.0, 1.5))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    path = latest_checkpoint(workdir / "checkpoints")
    tensors, state = params_of(path)
    assert state["step"] >= 1 and tensors
    resumed = train(workdir, "--max-steps", str(state["step"] + 1), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def test_a_nan_loss_stops_with_a_clear_message(tmp_path):
    out = train(tmp_path / "n", "--max-steps", "50", "--checkpoint-every", "1", "--lr", "1e12",
                "--warmup-epochs", "0")
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged at step "), last
    kept = latest_checkpoint(tmp_path / "n" / "checkpoints")
    if kept is not None:
        params, _ = params_of(kept)
        assert all(v == v for values in params.values() for v in values), "a checkpoint holds NaN"


def test_jax_checkpoint_predicts_the_same_classes_on_the_python_backend(finished_run):
    from array import array

    from backends import get_backend
    from data_tools import Loader, open_dataset
    from tinyeffnet import Tensor
    from tinyeffnet.training.state import load_model
    workdir, _ = finished_run
    loader = Loader(open_dataset("default", "eval", 16), 8)
    batch = next(iter(loader.batches(0)))
    classes = []
    for name in ("jax", "python"):
        b = get_backend(name)
        net, _ = load_model(str(workdir), name)
        x = b.from_flat(loader.normalization.floats(batch.images), (8, 16, 16, 3),
                        "float32" if name == "jax" else "float64")
        logits = Tensor(net(Tensor(x, b)).data, b).tolist()
        classes.append([row.index(max(row)) for row in logits])
    assert classes[0] == classes[1]


def test_probe_cli_on_two_checkpoints_of_a_run(finished_run):
    workdir, _ = finished_run
    first = workdir / "checkpoints" / "step-00000003.safetensors"
    out = run(["tinyeffnet.probe", "--checkpoint", str(first), str(workdir), "--batch-size", "8", "--json"])
    assert out.returncode == 0, out.stderr[-3000:]
    reports = [_strict_json(line) for line in out.stdout.strip().splitlines()]
    assert [r["step"] for r in reports] == [3, 6] and all(r["variant"] == "base" for r in reports)
    assert all(r["images"] == 8 and 0.0 <= r["top1"] <= 1.0 for r in reports)
    for report in reports:
        assert len(report["blocks"]) > 1 and all(b["out_rms"] > 0 for b in report["blocks"])
        assert all(0.0 < b["gate_mean"] < 1.0 for b in report["blocks"])  # base: SE in every block
    out = run(["tinyeffnet.probe", "--checkpoint", str(workdir), "--batch-size", "8"])
    assert out.returncode == 0 and "| block | stage | SE |" in out.stdout, out.stderr[-3000:]
    _one_line_error(run(["tinyeffnet.probe", "--checkpoint", str(workdir / "nothing-here")]), "error:")


def test_evaluate_and_predict_clis(finished_run, tmp_path):
    workdir, _ = finished_run
    out = run(["tinyeffnet.evaluate", "--checkpoint", str(workdir), "--data", "default", "--json", "--limit", "100"])
    assert out.returncode == 0, out.stderr[-3000:]
    result = _strict_json(out.stdout)
    assert result["images"] == 100 and 0.0 <= result["top1"] <= result["top5"] <= 1.0
    from PIL import Image
    image = tmp_path / "shirt.png"
    Image.new("L", (40, 40), 30).save(image)
    out = run(["tinyeffnet.predict", "--checkpoint", str(workdir), str(image), "--json", "--backend", "python"])
    assert out.returncode == 0, out.stderr[-3000:]
    top = json.loads(out.stdout.splitlines()[0])["top"]
    assert len(top) == 5 and abs(sum(t["probability"] for t in top) - 1.0) < 0.5
    assert top[0]["name"] in ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                              "Bag", "Ankle boot")


def _strict_json(text):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_predict_reports_each_image_on_its_own(finished_run, tmp_path):
    from PIL import Image
    workdir, _ = finished_run
    good, other = tmp_path / "good.png", tmp_path / "other.png"
    Image.new("L", (40, 40), 30).save(good)
    Image.new("L", (40, 40), 200).save(other)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    big = tmp_path / "big.png"
    Image.new("L", (200, 200), 0).save(big)
    # Pillow refuses images over twice MAX_IMAGE_PIXELS; a small limit stands in for a 14000x14000 photo.
    code = ("import sys, PIL.Image; PIL.Image.MAX_IMAGE_PIXELS = 10_000; from tinyeffnet.predict import main; "
            "sys.exit(main(sys.argv[1:]))")
    args = ["--checkpoint", str(workdir), str(good), str(broken), str(big), str(other), "--backend", "python"]
    out = subprocess.run([sys.executable, "-c", code] + args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = out.stdout.splitlines()  # one line per readable image, in order
    assert [line.split(": ")[0] for line in lines] == [str(good), str(other)] and lines[0].count("%") == 5
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 3 and str(broken) in errors[0] and "not a readable image" in errors[0]
    assert str(big) in errors[1] and "too large to decode safely" in errors[1], errors
    assert errors[2] == "error: 2 of 4 image files could not be read (each named above); the others have their results"
    out = subprocess.run([sys.executable, "-c", code] + args + ["--json"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    results = [_strict_json(line) for line in out.stdout.splitlines()]  # JSON Lines, a record for every file
    assert out.returncode == 1 and [r["image"] for r in results] == [str(good), str(broken), str(big), str(other)]
    assert ["top" in r for r in results] == [True, False, False, True]
    assert "too large to decode safely" in results[2]["error"]


def test_every_json_written_or_printed_is_strict(finished_run):
    workdir, _ = finished_run
    for name in ("summary.json", "config.json"):
        _strict_json(open(workdir / name).read())
    for line in open(workdir / "metrics.jsonl"):
        _strict_json(line)
    summary = _strict_json(open(workdir / "summary.json").read())
    assert summary["images_per_s"] is None or summary["images_per_s"] > 0  # never a made-up 0.0
    from tinyeffnet._files import dumps
    assert _strict_json(dumps({"top1": float("nan"), "loss": [float("inf"), 1.5]})) == {"top1": None,
                                                                                       "loss": [None, 1.5]}


def _one_line_error(out, needle):
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert needle in out.stderr.strip().splitlines()[-1], out.stderr[-2000:]


def test_clear_errors(finished_run, tmp_path):
    workdir, _ = finished_run
    _one_line_error(train(tmp_path / "a", "--data", "imagenet:/no/such/dir"), "does not exist")
    (tmp_path / "empty").mkdir()
    _one_line_error(train(tmp_path / "b", "--data", str(tmp_path / "empty")), "is empty")
    _one_line_error(run(["tinyeffnet.train", "--variant", "seend@middle"]), "unknown variant 'seend@middle'")
    bad = run(["tinyeffnet.train", "--augment", "crop"])
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --augment must be one of full, flip, none, got 'crop'"
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    _one_line_error(run(["tinyeffnet.evaluate", "--checkpoint", str(junk)]), "is not a readable tinyeffnet checkpoint")
    other = run(["tinyeffnet.train"] + SMALL + ["--workdir", str(workdir), "--variant", "nose@all", "--resume"])
    _one_line_error(other, "--variant: was 'base', now 'nose@all'")
    assert other.returncode == 2
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8")
    odd = run(["tinyeffnet.train"] + SMALL + ["--workdir", str(tmp_path / "c"), "--batch-size", "12"], env=env)
    _one_line_error(odd, "--batch-size 12 is not divisible by the 8 devices")


def test_python_backend_runs_end_to_end(tmp_path):
    out = run(["tinyeffnet.train", "--backend", "python", "--variant", "nose@all", "--width", "0.25", "--depth", "0.1",
               "--image-size", "16", "--batch-size", "4", "--max-steps", "2", "--eval-examples", "8",
               "--workdir", str(tmp_path / "p")])
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.load(open(tmp_path / "p" / "summary.json"))
    assert summary["backend"] == "python" and summary["eval_images"] == 8 and summary["steps"] == 2
