"""The SE ablation runner: the paper's Table II, the variants of EfficientNet-B0 trained side
by side (the command is `python -m tinyeffnet.ablation`).

Every chosen variant is trained with the identical recipe (every flag of
`python -m tinyeffnet.train`, resolved once), the same data order and the same seeds
(run s of every variant uses seed --seed + s), each into DIR/<variant>/seed-<s>/. Then
DIR/table2.md, DIR/table2.json and DIR/table2.png compare our figures with the paper's
(see tinyeffnet.experiments.table2).

Resumable: rerun the same command and a finished run (summary.json present, config.json
matching the request) is not trained again; an interrupted one continues from its latest
checkpoint. A run folder trained with another recipe is an error, never overwritten.

Shared: the same command started several times on one DIR (on one machine, or on machines
sharing the folder) splits the runs. Each run claims its folder as every `train` does (an
OS lock, dropped when its process ends, kill -9 included): a worker skips a run claimed by
a live process, resumes one left unfinished and unclaimed, waits while others hold the
rest, and the table is written once (DIR/.table-claim).

Each run trains in its own process (`python -m tinyeffnet.train` with the run's flags): a
crash or an out-of-memory stops that run only, peak memory is measured per run (summary.json),
and JAX starts fresh.
Compiled programs are shared through a persistent JAX compilation cache in DIR/.jax-cache
(unless JAX_COMPILATION_CACHE_DIR is set), so seeds after the first of a variant skip
compilation.
"""
import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

from .._files import WriteError, dumps, make_dirs, read_json_object
from ..model import VARIANTS, canonical_variant
from ..training.checkpoint import latest_checkpoint
from ..training.config import NOT_TRAJECTORY, config_differences
from ..training.preemption import exit_status
from ..training.claim import CLAIM_FD_ENV, Claim, WorkdirHeld
from ..training.rundir import saved_config
from .table2 import build_table, markdown, write_report

OLD_RUN_INFO = "ablation-run.json"  # where runs of older code kept their memory figures
# Flags that do not change what a finished run reports: it stays valid when they differ
# (unlike --resume, which also lets --max-steps and --eval-examples change).
NOT_RECIPE = tuple(k for k in NOT_TRAJECTORY if k not in ("max_steps", "eval_examples"))
PER_RUN = ("variant", "seed")  # set per run folder
class AblationError(ValueError):
    """A request that cannot be carried out as asked; the message says what to do."""


def parse_variants(text):
    """'all' or 'base,nose@all,...' (the paper's spellings too) -> canonical names in table order."""
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if not names:
        raise AblationError(f"--variants is empty: give all or a comma-separated list of {', '.join(VARIANTS)}")
    if any(n.lower() == "all" for n in names):
        return list(VARIANTS)
    chosen = set()
    for n in names:
        try:
            chosen.add(canonical_variant(n))
        except ValueError:
            raise AblationError(f"unknown variant {n!r} in --variants: choose all or a comma-separated list of "
                                f"{', '.join(VARIANTS)}") from None
    return [v for v in VARIANTS if v in chosen] + sorted(chosen - set(VARIANTS))  # then variants of your own

def run_dir(workdir, variant, seed):
    return os.path.join(workdir, variant, f"seed-{seed}")


def recipe(cfg):
    """The flags that decide what a run computes, less the per-run variant and seed."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_RECIPE and k not in PER_RUN}


def plan(cfg):
    """(what the run folder cfg.workdir holds, detail): ('done', summary) | ('resume', checkpoint
    or None) | ('fresh', None).

    A run writes its config.json before anything else, so a folder without one holds no run."""
    folder = cfg.workdir
    summary = read_json_object(os.path.join(folder, "summary.json"))
    checkpoint = latest_checkpoint(os.path.join(folder, "checkpoints"))
    saved = saved_config(folder)
    if saved is None and summary is None and checkpoint is None:
        return "fresh", None
    if saved is None:
        raise AblationError(f"{folder} holds a run but no readable config.json: cannot tell its recipe; "
                            "move it away or use another --workdir")
    diffs = config_differences(saved, cfg, NOT_RECIPE)
    if diffs:
        raise AblationError(f"{folder} was trained with another recipe ({'; '.join(diffs)}): "
                            "use another --workdir, the same flags, or move that folder away")
    if summary is not None and summary.get("variant") == cfg.variant:
        return "done", summary
    return "resume", checkpoint


def _child_env(workdir):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds tinyeffnet, data_tools, backends
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if "JAX_COMPILATION_CACHE_DIR" not in env:
        env["JAX_COMPILATION_CACHE_DIR"] = os.path.abspath(os.path.join(workdir, ".jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # also the many small init programs
    return env


class AblationStopped(Exception):
    """The run in progress stopped on a signal (its checkpoint written): this worker stops too."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


def _run_child(cfg, env, claim_fd):
    """The run's process (`python -m tinyeffnet.train` with the run's flags), to its end,
    holding the run's claim with this one (`claim_fd`); a SIGTERM to this worker is passed on
    to it (the run checkpoints and stops), and a stopped run stops this worker
    (AblationStopped)."""
    proc = subprocess.Popen([sys.executable, "-m", "tinyeffnet.train"] + cfg.to_flags(), env=env,
                            pass_fds=(claim_fd,))
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        status = proc.wait()
    except KeyboardInterrupt:  # the run got the same Ctrl-C: let it finish its checkpoint
        proc.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if status in (exit_status(signal.SIGTERM), exit_status(signal.SIGINT)):
        raise AblationStopped(status)
    return status


def _run_record(cfg, summary):
    speed = summary.get("images_per_s")
    memory = dict(peak_bytes_in_use=summary.get("device_peak_bytes"),
                  host_peak_rss_bytes=summary.get("host_peak_rss_bytes"), memory_note=None)
    if "host_peak_rss_bytes" not in summary:  # a run of an older tinyeffnet kept these beside its summary
        memory.update({k: v for k, v in (read_json_object(os.path.join(cfg.workdir, OLD_RUN_INFO)) or {}).items()
                       if k in memory})
    elif memory["peak_bytes_in_use"] is None:
        memory["memory_note"] = f"the {summary.get('device')} device keeps no peak memory statistics"
    return dict(seed=cfg.seed, top1=summary["top1"], top5=summary["top5"], steps=summary.get("steps"),
                images_per_s=speed or None,  # 0.0: fewer steps than --log-every, nothing measured
                seconds=summary.get("seconds"), **memory)


def _notes(cfg, runs):
    notes = []
    records = [r for rs in runs.values() for r in rs]
    if records and all(r["images_per_s"] is None for r in records):
        notes.append(f"images/s not measured: train measures it every --log-every {cfg.log_every} steps and "
                     "these runs were shorter")
    memory = {r["memory_note"] for r in records if r.get("memory_note")}
    if memory:
        notes.append("device peak memory unknown (" + "; ".join(sorted(memory)) + "): the cost table shows the "
                     "run process's peak resident host memory instead")
    notes.append("seconds per run: wall time of train() in the process that finished the run (compilation and "
                 "evaluation included; a resumed run counts its last session only)")
    notes.append("the paper's numbers are EfficientNet-B0 on ImageNet (350 epochs, 224x224), ours come from the "
                 "recipe above: compare the Δ columns, not the accuracies, and only Δs larger than the seed spread")
    return notes


def ablate(cfg, variants, seeds, workdir, say=print, train=True, poll_seconds=2.0):
    """Train what is missing, write the report; returns (table, failed runs). With train=False
    nothing is trained: the table holds the runs finished so far and names the others.

    Several workers (this command started more than once on the same DIR, on one machine or on
    machines sharing it) split the runs: a worker claims a run folder (rundir.Claim, handed
    down to the run's process) before training it; one claimed by a live run is left to it,
    and one unfinished and unclaimed (its worker died) is resumed.
    A worker returns once every run is finished, or failed in its own hands."""
    configs = [dataclasses.replace(cfg, variant=v, seed=s, workdir=run_dir(workdir, v, s), resume=False)
               for v in variants for s in seeds]
    first = [plan(c) for c in configs]  # check every folder before training anything
    tags = [f"[{i}/{len(configs)}] {c.variant} seed {c.seed}" for i, c in enumerate(configs, 1)]
    finished, failed, missing = {}, {}, []
    if not train:
        for i, (c, (holds, detail)) in enumerate(zip(configs, first)):
            if holds == "done":
                finished[i] = _run_record(c, detail)
                say(f"{tags[i]}: finished (top-1 {detail['top1']:.4f})")
            else:
                say(f"{tags[i]}: not finished, left out of the table (--report-only)")
                missing.append(f"{c.variant} seed {c.seed}")
    env, waiting = _child_env(workdir), None
    while train and len(finished) + len(failed) < len(configs):
        held = []
        for i, c in enumerate(configs):
            if i in finished or i in failed:
                continue
            try:  # even a finished run: its process may still be writing curves.png
                claim = Claim.take(c.workdir, attempts=1)
            except WorkdirHeld as e:
                held.append(f"{c.variant} seed {c.seed} ({e.who})")
                continue
            except OSError as e:  # the folder cannot be written (WriteError: one line)
                failed[i] = dict(variant=c.variant, seed=c.seed, error=str(e))
                say(f"{tags[i]}: FAILED ({e}); the other runs go on", flush=True)
                continue
            with claim:  # handed down to the run's process, released when it ends
                holds, detail = plan(c)
                if holds == "done":
                    finished[i] = _run_record(c, detail)
                    by = "before" if first[i][0] == "done" else "by another worker"
                    say(f"{tags[i]}: finished {by} (top-1 {detail['top1']:.4f}), not trained again: {c.workdir}")
                    continue
                ok, outcome = _train_one(c, holds, detail, tags[i], env, say, claim)
            (finished if ok else failed)[i] = outcome
            break  # look again from the first run: one left by a dead worker comes first
        else:
            if held and held != waiting:
                say(f"waiting for runs other workers hold: {', '.join(held)}", flush=True)
            waiting = held
            time.sleep(poll_seconds if held else 0)
    runs = {v: [] for v in variants}
    for i in sorted(finished):
        runs[configs[i].variant].append(finished[i])
    failed = [failed[i] for i in sorted(failed)]
    return _table(cfg, variants, runs, failed, workdir, missing), failed


def _train_one(cfg, holds, detail, tag, env, say, claim):
    """Train (or resume) one run in its own process, which inherits `claim`: (True, its
    record) or (False, the failure)."""
    cfg = dataclasses.replace(cfg, resume=holds == "resume")
    doing = "training" if holds == "fresh" else ("resuming from " + os.path.basename(detail) if detail else
                                                 "restarting (no checkpoint yet)")
    say(f"{tag}: {doing} -> {cfg.workdir}", flush=True)
    start = time.time()
    status = _run_child(cfg, dict(env, **{CLAIM_FD_ENV: str(claim.fd)}), claim.fd)
    summary = read_json_object(os.path.join(cfg.workdir, "summary.json"))
    if status != 0 or summary is None:
        say(f"{tag}: FAILED (exit status {status}); the other runs go on", flush=True)
        return False, dict(variant=cfg.variant, seed=cfg.seed,
                           error=f"training process exited with status {status} (its error is above)")
    say(f"{tag}: top-1 {summary['top1']:.4f} top-5 {summary['top5']:.4f}, {time.time() - start:.0f} s "
        f"(train {summary.get('seconds', 0):.0f} s)", flush=True)
    return True, _run_record(cfg, summary)


def write_table_once(table, workdir):
    """(paths of table2.*, whether this call wrote them). Workers that finish together write
    the table one at a time (a lock on DIR/.table-claim): one that finds the same table
    already written leaves it."""
    paths = {k: os.path.join(workdir, f"table2.{k}") for k in ("json", "md", "png")}
    make_dirs(workdir)
    lock = os.path.join(workdir, ".table-claim")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise WriteError(lock, e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        same = read_json_object(paths["json"]) == json.loads(dumps(table)) and _read_text(paths["md"]) == markdown(table)
        if same and os.path.exists(paths["png"]):  # the markdown too: the report's code may be newer than the runs
            return paths, False
        return write_report(table, workdir), True
    finally:
        os.close(fd)


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _table(cfg, variants, runs, failed, workdir, missing=()):
    num_classes = None
    for v in variants:  # every run folder's config.json knows the data's class count
        for r in runs[v]:
            saved = read_json_object(os.path.join(run_dir(workdir, v, r["seed"]), "config.json")) or {}
            num_classes = num_classes or saved.get("num_classes")
    notes = _notes(cfg, runs)
    if missing:
        notes.append(f"not finished when this table was written, left out: {', '.join(missing)}; the paired "
                     "statistics use the seeds both variants of a pair finished")
    return build_table(runs, variants, recipe(cfg), num_classes, cfg.model, getattr(cfg, "width", None),
                       getattr(cfg, "depth", None), failed, notes)
