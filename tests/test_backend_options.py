"""What a backend decides for itself: the JAX conv formulations, fixed when an instance is
made (one shared instance per choice), and which dtypes a network computes in, stated once
by the backend and asked by the trainer's config and runtime."""
import pytest

from backends import backend_class, get_backend, register_backend
from backends.python_backend import PythonBackend
from tinyeffnet.training.config import ConfigError, build_parser, config_from_args
from tinyeffnet.training.runtime import make_runtime


def _config(*argv):
    return config_from_args(build_parser().parse_args(list(argv))).resolved()


# ---------------------------------------------------------------- instances and their options
def test_one_instance_per_name_and_resolved_options():
    jax = pytest.importorskip("jax")
    jb = get_backend("jax")
    assert get_backend("jax") is jb and get_backend(jb) is jb
    # Defaults spelled out are the same choice, so the same instance.
    assert get_backend("jax", platform=jax.default_backend(), depthwise=jb.depthwise, dense=jb.dense) is jb
    other = {"taps": "conv", "conv": "taps"}[jb.depthwise]
    mine = get_backend("jax", depthwise=other)
    assert mine is not jb and mine is get_backend("jax", depthwise=other)
    assert (mine.depthwise, mine.dense, mine.platform) == (other, jb.dense, jb.platform)
    assert get_backend("jax") is jb and jb.depthwise != other, "the default instance keeps its own choice"


def test_formulations_follow_the_platform_unless_named():
    pytest.importorskip("jax")
    cases = {("cpu", None, None): ("taps", "matmul"), ("gpu", None, None): ("conv", "conv"),
             ("tpu", None, None): ("conv", "conv"), ("cpu", "conv", None): ("conv", "matmul"),
             ("tpu", "taps", "matmul"): ("taps", "matmul")}
    for (platform, depthwise, dense), want in cases.items():
        b = get_backend("jax", platform=platform, depthwise=depthwise, dense=dense)
        assert (b.platform, b.depthwise, b.dense) == (platform,) + want


def test_an_instance_never_changes_its_choice():
    pytest.importorskip("jax")
    jb = get_backend("jax")
    for attribute, value in (("depthwise", "conv"), ("dense", "conv"), ("platform", "tpu"), ("precision", "highest")):
        with pytest.raises(AttributeError):
            setattr(jb, attribute, value)


def test_an_unknown_formulation_is_one_line():
    pytest.importorskip("jax")
    with pytest.raises(ValueError, match=r"^depthwise='loops' is not a formulation of the jax backend: "
                                         r"choose one of taps, conv$"):
        get_backend("jax", depthwise="loops")


def test_registering_a_name_again_drops_its_instances():
    class First(PythonBackend):
        name = "options-test"

    class Second(PythonBackend):
        name = "options-test"

    register_backend("options-test", First)
    assert type(get_backend("options-test")) is First
    register_backend("options-test", Second)
    assert type(get_backend("options-test")) is Second


def test_backend_class_is_not_an_instance_and_unknown_names_are_one_line():
    assert backend_class("python") is PythonBackend
    with pytest.raises(ValueError, match="unknown backend 'torch': choose one of"):
        backend_class("torch")


# ---------------------------------------------------------------- compile
def test_compile_is_jit_on_jax_and_the_function_itself_elsewhere():
    py = get_backend("python")

    def double(x):
        return py.add(x, x)

    assert py.compile(double) is double
    jax = pytest.importorskip("jax")
    jb = get_backend("jax")
    compiled = jb.compile(lambda x: jb.add(x, x))
    assert "stablehlo.add" in compiled.lower(jb.from_flat([1.0, 2.0], (2,))).as_text()
    assert jb.to_flat(compiled(jb.from_flat([1.0, 2.0], (2,)))) == [2.0, 4.0]
    assert isinstance(jax.jit(lambda x: x), type(compiled))


# ---------------------------------------------------------------- compute dtypes: stated once
def test_config_and_runtime_ask_the_backend_which_dtypes_it_computes_in(monkeypatch):
    assert PythonBackend.compute_dtypes == ("float64",)
    with pytest.raises(ConfigError, match="--dtype must be one of float64 on the python backend"):
        _config("--backend", "python", "--dtype", "float32").check()
    with pytest.raises(ValueError, match="--dtype must be one of float64 on the python backend, got 'float32'"):
        make_runtime("python", "float32")
    assert make_runtime("python").compute_dtype == make_runtime("python", "float64").compute_dtype == "float64"
    # Change the backend's statement and both follow it: nothing else states it.
    monkeypatch.setattr(PythonBackend, "compute_dtypes", ("float64", "float32"))
    _config("--backend", "python", "--dtype", "float32").check()
    assert make_runtime("python", "float32").compute_dtype == "float32"


def test_jax_runtime_refuses_a_dtype_the_backend_does_not_compute_in():
    pytest.importorskip("jax")
    from backends.jax_backend import JaxBackend
    assert JaxBackend.compute_dtypes == ("float32", "bfloat16")
    with pytest.raises(ValueError, match="--dtype must be one of float32, bfloat16 on the jax backend, got 'float16'"):
        make_runtime("jax", "float16")
    assert make_runtime("jax", "bfloat16").compute_dtype == "bfloat16"


# ---------------------------------------------------------------- libtpu on a machine without a TPU
NO_TPU_HERE = """
import importlib.util, json, os
from jax._src import hardware_utils
import backends.jax_backend  # noqa: F401  (decides before JAX starts a client)
import jax, jax.numpy as jnp
(jnp.ones(2) + 1).block_until_ready()
maps = open("/proc/self/maps").read()
print(json.dumps(dict(chips=hardware_utils.num_available_tpu_chips_and_device_id()[0],
                      libtpu_installed=importlib.util.find_spec("libtpu") is not None,
                      libtpu_mapped="libtpu" in maps, platforms=jax.config.jax_platforms,
                      devices=[d.platform for d in jax.devices()])))
"""


def test_no_libtpu_loaded_where_no_tpu_is_attached():
    """Where libtpu is installed (the tpu and test extras) on a machine without TPU chips, the
    JAX backend keeps JAX on the CPU: libtpu is not loaded (about 100 MB in every process,
    and its warnings on stderr); a choice made in JAX_PLATFORMS stays the user's."""
    import json
    import os
    import subprocess
    import sys
    pytest.importorskip("jax")
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/maps")
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "TPU_WORKER_HOSTNAMES")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-c", NO_TPU_HERE], cwd=root, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    r = json.loads(run.stdout.strip().splitlines()[-1])
    if r["chips"] or not r["libtpu_installed"]:
        pytest.skip(f"needs libtpu installed and no TPU attached: {r}")
    assert r["platforms"] == "cpu" and not r["libtpu_mapped"], r
    assert "Failed to find host bounds" not in run.stderr, run.stderr[-2000:]


def test_a_platform_choice_of_the_users_is_kept(monkeypatch):
    jax = pytest.importorskip("jax")
    from backends import jax_backend
    chosen, update = jax.config.jax_platforms, jax.config.update
    update("jax_platforms", None)  # as in a process where nothing chose yet (its client is started already)
    try:
        calls = []
        for name in ("JAX_PLATFORMS", "TPU_WORKER_HOSTNAMES"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(jax.config, "update", lambda *a: calls.append(a))
        for name, value in (("JAX_PLATFORMS", "cpu,tpu"), ("TPU_WORKER_HOSTNAMES", "host-0,host-1")):
            with monkeypatch.context() as m:
                m.setenv(name, value)
                jax_backend._skip_absent_tpu()
        assert calls == [], "the JAX backend overrode the platforms the user chose"
    finally:
        update("jax_platforms", chosen)
