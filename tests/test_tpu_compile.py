"""Our training step compiled for a TPU slice on this machine (libtpu, no TPU): it compiles,
it sums the gradients over the chips, and it moves no more bytes than jax.grad's step.

A narrow, shallow B0 at 32x32 with 8 images per chip keeps the compiles to seconds; the
full-size figures are in the README (python -m tinyeffnet.bench --topology ...)."""
from types import SimpleNamespace

import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("libtpu", reason="the TPU compiler comes with libtpu: pip install -e '.[jax,tpu]'")

from tinyeffnet import bench  # noqa: E402
from tinyeffnet.benchmarks import jax_step, tpu  # noqa: E402
from tinyeffnet.model import build_model  # noqa: E402


@pytest.fixture(scope="module")
def compiled_v5e():
    """One bench run on v5e:2x2 (4 chips), shared by the tests of this file."""
    args = SimpleNamespace(variant="base", model="b0", num_classes=10, image_size=32, batch_size=32,
                           dtype="bfloat16", steps=0, topology="v5e:2x2", depthwise=None, dense=None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jax_step, "build_model", lambda variant, model, classes, backend: build_model(
            variant, model, classes, backend=backend, width=0.25, depth=0.2))
        result = jax_step.bench_model_jax(args)
        net = build_model("base", "b0", 10, backend="meta", width=0.25, depth=0.2)
    return result, sum(p.size for _, p in net.named_parameters())


def test_step_compiles_for_the_topology_with_the_tpu_formulation(compiled_v5e):
    r, _ = compiled_v5e
    assert (r["chips"], r["device_kind"], r["generation"], r["per_chip_batch"]) == (4, "TPU v5 lite", "v5e", 8)
    assert r["formulation"] == {"depthwise": "conv", "dense": "conv"}  # XLA's convolutions, as on a TPU
    for who in ("custom", "jaxgrad", "eval"):
        assert r[f"{who}_flops"] > 0 and r[f"{who}_bytes_accessed"] > 0 and r[f"{who}_memory_bytes"] > 0
    assert r["custom_memory_bytes"] < r["hbm_bytes"]


def test_gradients_are_summed_over_the_chips(compiled_v5e):
    r, params = compiled_v5e
    # Every parameter's gradient crosses the chips (BN's batch statistics too); the eval step
    # sums only its counts.
    assert r["custom_all_reduces"] > 0 and r["custom_all_reduced_values"] >= params
    assert r["eval_all_reduced_values"] < params


def test_our_step_moves_no_more_bytes_than_jax_grad(compiled_v5e):
    r, _ = compiled_v5e
    assert r["custom_bytes_accessed"] <= r["jaxgrad_bytes_accessed"]


def test_all_reduce_counter_reads_hlo_shapes():
    hlo = ("  %all-reduce.1 = (f32[3,3,1,32]{3,2,1,0}, bf16[32]{0}) all-reduce(%a, %b), to_apply=%add\n"
           "  %all-reduce-start = f32[]{:T(128)} all-reduce-start(%c), to_apply=%add\n"
           "  %all-reduce-done = f32[]{:T(128)} all-reduce-done(%all-reduce-start)\n"
           "  %fusion = f32[7]{0} fusion(%all-reduce.1), kind=kLoop\n")
    assert tpu.all_reduces(hlo) == (2, 3 * 3 * 32 + 32 + 1)


@pytest.mark.parametrize("argv, message", [
    (["--topology", "v9z:2x2"], "e.g. v4:2x2x1"),
    (["--topology", "v5e:2x2", "--batch-size", "6"], "must divide by the 4 chips"),
    (["--topology", "v5e:2x2", "--steps", "3"], "--steps 0"),
])
def test_bad_topology_flags_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--backend", "jax", "--variant", "base", "--steps", "0", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and message in err[0], err


def test_missing_libtpu_names_the_install(monkeypatch):
    monkeypatch.setattr(tpu.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(tpu.TopologyError, match=r"pip install -e '\.\[jax,tpu\]'"):
        tpu.topology_devices("v5e:2x2")


@pytest.mark.parametrize("name, chips, kind", [
    ("v4:2x2x1", 4, "TPU v4"), ("v5e:2x2", 4, "TPU v5 lite"), ("v5p:2x2x1", 4, "TPU v5"), ("v6e:2x2", 4, "TPU v6 lite"),
])
def test_generations_give_one_device_per_chip(name, chips, kind):
    devices = tpu.topology_devices(name)
    assert len(devices) == chips and devices[0].device_kind == kind and kind in tpu.HBM_BYTES
