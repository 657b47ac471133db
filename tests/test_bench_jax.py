"""`python -m tinyeffnet.bench --backend jax --variant V`: both steps timed, XLA's memory and
cost analyses of both programs reported, the conv formulations chosen by flag or by the
target platform, on a backend instance of the benchmark's own.

A reduced-width B0 keeps the two compiles short (one pair of them for the whole file); the
full-size figures are in the README."""
import json
import sys

import pytest

jax = pytest.importorskip("jax")

from backends import get_backend  # noqa: E402
from tinyeffnet import bench  # noqa: E402
from tinyeffnet.benchmarks import jax_step  # noqa: E402
from tinyeffnet.model import build_model  # noqa: E402


@pytest.fixture
def small_b0(monkeypatch):
    monkeypatch.setattr(jax_step, "build_model",
                        lambda variant, model, classes, backend: build_model(variant, model, classes, backend=backend,
                                                                              width=0.25, depth=0.1))


def _bench(capsys, *flags):
    argv = ["--backend", "jax", "--variant", "base", "--image-size", "16", "--batch-size", "2",
            "--num-classes", "3", "--json", *flags]
    assert bench.main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_reports_speed_and_xla_analyses_of_both_steps(small_b0, capsys):
    r = _bench(capsys, "--steps", "1", "--depthwise", "conv", "--dense", "conv")
    assert r["formulation"] == {"depthwise": "conv", "dense": "conv"}
    for who in ("custom", "jaxgrad"):
        assert r[f"{who}_img_per_s"] > 0 and r[f"{who}_compile_s"] > 0
        assert r[f"{who}_temp_bytes"] > 0 and r[f"{who}_bytes_accessed"] > 0 and r[f"{who}_flops"] > 0
        assert r[f"{who}_minor_faults_per_step"] >= 0 and 0 <= r[f"{who}_system_cpu_share"] <= 1
    assert r["ratio"] == pytest.approx(r["custom_img_per_s"] / r["jaxgrad_img_per_s"])
    # the process's peak resident memory: over the run, and per compile and per timed run
    assert r["peak_rss_bytes"] > 0
    if sys.platform.startswith("linux"):  # where a phase's peak can be told apart
        for who in ("custom", "jaxgrad"):
            assert 0 < r[f"{who}_compile_peak_rss_bytes"] <= r["peak_rss_bytes"]
            assert 0 < r[f"{who}_steps_peak_rss_bytes"] <= r["peak_rss_bytes"]
    if jax.default_backend() == "cpu":  # the CPU runtime compiles our step in two halves
        assert r["custom_programs"] == 2


def test_formulation_is_the_target_platforms_on_an_instance_of_its_own():
    assert [(b.depthwise, b.dense) for b in map(jax_step.step_backend, ("cpu", "gpu", "tpu"))] == [
        ("taps", "matmul"), ("conv", "conv"), ("conv", "conv")]
    chosen = jax_step.step_backend("tpu", depthwise="taps")
    assert (chosen.depthwise, chosen.dense, chosen.platform) == ("taps", "conv", "tpu")
    assert chosen is not get_backend("jax")


@pytest.mark.parametrize("argv, message", [
    (["--backend", "python", "--variant", "base", "--depthwise", "conv"], "need --backend jax"),
    (["--backend", "jax", "--variant", "base", "--steps", "-1"], "--steps not negative"),
])
def test_bad_flags_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and message in err[0], err
