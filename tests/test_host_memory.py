"""Huge pages for XLA's CPU scratch memory (backends/host_memory.py): when the commands
restart themselves, and what it changes (page faults per run of a compiled program)."""
import json
import os
import subprocess
import sys

import pytest

from backends.host_memory import TUNABLE, huge_page_tunables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MADVISE = "always [madvise] never\n"


def test_tunables_where_huge_pages_help():
    assert huge_page_tunables({}, "glibc 2.36", MADVISE) == f"{TUNABLE}=1"
    assert huge_page_tunables({}, "glibc 2.35", "[always] madvise never\n") == f"{TUNABLE}=1"
    # other tunables the user set are kept
    assert huge_page_tunables({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "glibc 2.36", MADVISE) == \
        f"glibc.malloc.arena_max=2:{TUNABLE}=1"


@pytest.mark.parametrize("environ, libc, thp", [
    ({"GLIBC_TUNABLES": f"{TUNABLE}=0"}, "glibc 2.36", MADVISE),  # the user chose
    ({"GLIBC_TUNABLES": f"{TUNABLE}=1"}, "glibc 2.36", MADVISE),  # set already: no restart loop
    ({}, "glibc 2.34", MADVISE),  # the tunable is newer
    ({}, "", MADVISE),  # not glibc (musl, macOS, Windows)
    ({}, "glibc 2.36", "always madvise [never]\n"),  # huge pages switched off
    ({}, "glibc 2.36", ""),  # no transparent huge pages in this kernel
])
def test_nothing_changes_where_they_do_not(environ, libc, thp):
    assert huge_page_tunables(environ, libc, thp) is None


# A program whose only large memory is XLA's temporary block (128 MiB); it restarts itself
# as the commands do, then reports the median minor page faults of five runs.
PROBE = """
import json, os, resource, sys
from backends.host_memory import run_with_huge_pages
if sys.argv[1] == "restart":
    run_with_huge_pages()
import jax, jax.numpy as jnp
x = jnp.ones((4096, 4096), jnp.float32)
step = jax.jit(lambda x: jnp.sum(jnp.cumsum(jnp.sin(x) * 2.0 + x, axis=0) * jnp.cos(x), axis=0))
compiled = step.lower(x).compile()
for _ in range(2):
    compiled(x).block_until_ready()
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    compiled(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(dict(temp_pages=compiled.memory_analysis().temp_size_in_bytes // 4096,
                      faults=sorted(faults)[2], tunables=os.environ.get("GLIBC_TUNABLES"))))
"""


def _probe(mode):
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env.update(PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(huge_page_tunables({}) is None, reason="huge pages do not apply on this machine")
def test_restart_with_huge_pages_stops_the_page_faults():
    pytest.importorskip("jax")
    plain, restarted = _probe("plain"), _probe("restart")
    assert plain["tunables"] is None and restarted["tunables"] == f"{TUNABLE}=1"
    # 4 KiB pages: every run maps its temporary block afresh and faults in each page.
    assert plain["faults"] > 0.5 * plain["temp_pages"], plain
    # 2 MiB pages: 512 times fewer faults.
    assert restarted["faults"] < 0.05 * restarted["temp_pages"], (restarted, plain)


# A process that touches then frees a large block, then reports its peak resident memory
# before and after restarting the high-water mark (and hands its free memory back).
PEAKS = """
import json
from backends.host_memory import peak_rss_bytes, peak_rss_since_reset, release_free_memory, reset_peak_rss
block = bytearray(256 * 2 ** 20)  # zero-filled: every page touched
del block
release_free_memory()
print(json.dumps(dict(process=peak_rss_bytes(), with_block=peak_rss_since_reset(), restarted=reset_peak_rss(),
                      after=peak_rss_since_reset())))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the peak is restarted through Linux's /proc")
def test_peak_resident_memory_per_phase():
    out = subprocess.run([sys.executable, "-c", PEAKS], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["process"] >= r["with_block"] >= 256 * 2 ** 20, r
    assert r["restarted"] and r["after"] < r["with_block"] - 200 * 2 ** 20, r
