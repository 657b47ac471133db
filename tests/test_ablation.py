"""The SE ablation runner: one tiny two-variant ablation end to end (trained once per session),
then its files, exact parameter counts, report arithmetic, resumability and errors."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from tinyeffnet.ablation import main
from tinyeffnet.experiments.runner import AblationError, parse_variants, plan, run_dir
from tinyeffnet.training.config import TrainConfig
from tinyeffnet.model import VARIANTS, build_model
from tinyeffnet.experiments.table2 import build_table, markdown

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_JAX = importlib.util.find_spec("jax") is not None

VARIANTS_RUN = ["base", "nose@all"]
TINY = ["--data", "default", "--backend", "jax", "--max-steps", "2", "--batch-size", "16", "--image-size", "16",
        "--eval-examples", "32", "--epochs", "1", "--workers", "0"]
FACTS_1000 = {"base": 5_288_548, "nose@all": 4_652_008}  # paper: 5.29M and 4.65M


def _cli(workdir, *extra, env=None):
    cmd = [sys.executable, "-m", "tinyeffnet.ablation", "--variants", ",".join(VARIANTS_RUN), "--workdir",
           str(workdir)] + TINY + list(extra)
    # The timeout guards a hang only; how fast a run is belongs in the benchmarks.
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, request):
    if not HAVE_JAX:
        pytest.skip("the ablation test trains with --backend jax")
    workdir = tmp_path_factory.mktemp("ablation")
    env = dict(os.environ)
    cache = getattr(request.config, "cache", None)
    if cache is not None and "JAX_COMPILATION_CACHE_DIR" not in env:
        # JAX's persistent compilation cache (keyed by program and jax version) in .pytest_cache: the first
        # session compiles B0 (minutes on a busy 2-core CPU), later ones load the compiled programs.
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache.mkdir("jax-compilation-cache"))
    done = _cli(workdir, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(workdir / "table2.json") as f:
        table = json.load(f)
    return dict(workdir=workdir, out=done.stdout, table=table)


def test_files_and_progress(ablation):
    w = ablation["workdir"]
    for name in ("table2.md", "table2.json", "table2.png"):
        assert (w / name).is_file(), name
    for v in VARIANTS_RUN:
        folder = w / v / "seed-0"
        for name in ("summary.json", "config.json", "metrics.jsonl", "curves.png"):
            assert (folder / name).is_file(), f"{v}/{name}"
        assert os.listdir(folder / "checkpoints")
        with open(folder / "config.json") as f:
            saved = json.load(f)["config"]
        assert (saved["variant"], saved["seed"], saved["max_steps"], saved["image_size"]) == (v, 0, 2, 16)
        assert f"{v} seed 0: training" in ablation["out"]
    assert "EfficientNet-B0-noSE@all" in ablation["out"]  # the final table is printed


def test_params_exact(ablation):
    rows = ablation["table"]["variants"]
    assert list(rows) == VARIANTS_RUN and ablation["table"]["num_classes"] == 10
    for v in VARIANTS_RUN:
        assert rows[v]["params"] == build_model(v, num_classes=10, backend="meta").num_parameters()
        assert rows[v]["params_1000_classes"] == FACTS_1000[v]
    md = (ablation["workdir"] / "table2.md").read_text()
    assert "5,288,548" in md and "4,652,008" in md


def test_accuracies_and_deltas(ablation):
    t = ablation["table"]
    assert t["recipe"]["batch_size"] == 16 and t["recipe"]["eval_examples"] == 32 and t["seeds"] == [0]
    rows = t["variants"]
    for v in VARIANTS_RUN:
        r = rows[v]
        assert len(r["top1"]) == len(r["top5"]) == 1 and r["steps"] == [2]
        assert all(0.0 <= a <= 1.0 for a in r["top1"] + r["top5"])
        assert r["top1"][0] <= r["top5"][0]
        assert r["top1_mean"] == r["top1"][0] and r["top1_std"] is None  # one seed: no spread
        assert r["delta_top1"] == pytest.approx(r["top1_mean"] - rows["base"]["top1_mean"], abs=1e-12)
        assert r["delta_top5"] == pytest.approx(r["top5_mean"] - rows["base"]["top5_mean"], abs=1e-12)
        assert r["seconds"][0] > 0
    assert rows["base"]["delta_top1"] == 0.0
    assert rows["nose@all"]["paper"] == dict(params_m=4.65, top1=75.8, top5=92.7, delta_top1=-1.4, delta_top5=-0.7)


def test_markdown_has_both_variants_and_paper(ablation):
    md = (ablation["workdir"] / "table2.md").read_text()
    header = "| Model | Block arch. | #Params | Top-1 | Top-5 |"
    assert header in md
    for text in ("EfficientNet-B0 |", "EfficientNet-B0-noSE@all", "Fig. 1a", "Fig. 1b",
                 "5.29M", "77.2", "93.4", "4.65M", "75.8", "92.7", "-1.4", "no error bars"):
        assert text in md, text


def test_png_opens(ablation):
    with Image.open(ablation["workdir"] / "table2.png") as image:
        image.verify()
    with Image.open(ablation["workdir"] / "table2.png") as image:
        assert image.format == "PNG" and image.convert("L").getextrema()[0] < 128


def test_rerun_trains_nothing(ablation):
    w = ablation["workdir"]
    summaries = [w / v / "seed-0" / "summary.json" for v in VARIANTS_RUN]
    before = [p.stat().st_mtime_ns for p in summaries]
    done = _cli(w)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("not trained again") == 2 and ": training" not in done.stdout
    assert [p.stat().st_mtime_ns for p in summaries] == before
    with open(w / "table2.json") as f:
        assert json.load(f)["variants"]["nose@all"]["top1"] == ablation["table"]["variants"]["nose@all"]["top1"]


def test_other_recipe_is_refused_not_overwritten(ablation):
    w = ablation["workdir"]
    before = (w / "base" / "seed-0" / "summary.json").stat().st_mtime_ns
    done = _cli(w, "--lr", "0.3")
    assert done.returncode == 2
    from tinyeffnet.training.config import PRESETS
    trained = PRESETS["default"]["lr"]
    assert "another recipe" in done.stderr and f"--lr: was {trained}, now 0.3" in done.stderr
    assert (w / "base" / "seed-0" / "summary.json").stat().st_mtime_ns == before


def test_report_only_trains_nothing_and_names_what_is_missing(ablation, tmp_path):
    for v in VARIANTS_RUN:
        shutil.copytree(ablation["workdir"] / v / "seed-0", tmp_path / v / "seed-0",
                        ignore=shutil.ignore_patterns("checkpoints"))
    done = _cli(tmp_path, "--seeds", "2", "--report-only")
    assert done.returncode == 0, done.stderr[-3000:]
    assert ": training" not in done.stdout and not (tmp_path / "base" / "seed-1").exists()
    with open(tmp_path / "table2.json") as f:
        table = json.load(f)
    assert table["seeds"] == [0] and table["variants"]["nose@all"]["top1"] == \
        ablation["table"]["variants"]["nose@all"]["top1"]
    assert any("left out: base seed 1, nose@all seed 1" in n for n in table["notes"])


def test_interrupted_run_resumes(ablation, tmp_path):
    """A run folder with a checkpoint but no summary.json (killed after its last save) is resumed."""
    src = ablation["workdir"] / "base" / "seed-0"
    shutil.copytree(src, tmp_path / "base" / "seed-0")
    os.remove(tmp_path / "base" / "seed-0" / "summary.json")
    with open(src / "config.json") as f:
        saved = json.load(f)["config"]
    fields = {k: saved[k] for k in TrainConfig.__dataclass_fields__ if k in saved}
    cfg = TrainConfig(**dict(fields, workdir=run_dir(str(tmp_path), "base", 0), resume=False))
    state, checkpoint = plan(cfg)
    assert state == "resume" and checkpoint.endswith(".safetensors")
    assert plan(TrainConfig(**dict(fields, workdir=str(src))))[0] == "done"
    assert plan(TrainConfig(**dict(fields, workdir=str(tmp_path / "nothing"))))[0] == "fresh"


# ---------------------------------------------------------------- no training below
def test_unknown_variant_is_one_clear_line(tmp_path, capsys):
    assert main(["--variants", "base,se@nowhere", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'se@nowhere'" in err
    assert all(v in err for v in VARIANTS)
    assert not os.listdir(tmp_path)


def test_variant_names():
    assert parse_variants("all") == list(VARIANTS)
    assert parse_variants("nose@all, EfficientNet-B0-SEend@noskip,base,base") == ["base", "seend@noskip", "nose@all"]
    with pytest.raises(AblationError):
        parse_variants(" , ")


def _fake_runs(spread, noise=0.0):
    """base, seend@all 5 points below base and nose@noskip 0.1 below, on three seeds that move every
    variant alike by `spread` per seed; `noise`: the variants' own (not base's), alternating in sign by seed."""
    shifts = {"base": 0.0, "seend@all": -0.05, "nose@noskip": -0.001}
    return {v: [dict(seed=s, top1=0.8 + d + spread * (s - 1) + (v != "base") * noise * (-1) ** s, top5=0.95 + d,
                     seconds=1.0) for s in range(3)] for v, d in shifts.items()}


def _recipe():
    return dict(TrainConfig(lr=0.2, warmup_epochs=0.0, weight_decay=0.0, label_smoothing=0.1, dropout=0.2,
                            drop_connect=0.2, bn_momentum=0.9, batch_size=16, image_size=16, epochs=1).__dict__)


def test_report_judges_differences_to_base_seed_by_seed(tmp_path):
    runs = _fake_runs(0.01, noise=0.0002)
    t = build_table(runs, list(runs), _recipe(), 10)
    big, small = t["variants"]["seend@all"], t["variants"]["nose@noskip"]
    assert big["top1_std"] == pytest.approx(0.01, abs=5e-4) and big["delta_top1"] == pytest.approx(-0.05, abs=1e-3)
    # unpaired: the 0.1-point difference is inside twice the combined std of ~1 point; paired, the seed
    # effect cancels and the 0.04-point noise leaves it resolved
    assert big["delta_top1_exceeds_spread"] is True and small["delta_top1_exceeds_spread"] is False
    assert big["delta_top1_verdict"] == "below base" and small["delta_top1_verdict"] == "below base"
    assert small["delta_top1_paired"]["high"] < 0 and small["delta_top1_paired"]["n"] == 3
    assert big["delta_top1_by_seed"] == {s: pytest.approx(-0.05, abs=1e-3) for s in range(3)}
    md = markdown(t).split("## Differences to base")[1].split("## Against")[0]
    assert "2 below base" in md and "0 not resolved" in md
    row = next(line for line in md.splitlines() if line.startswith("| EfficientNet-B0-noSE@noskip"))
    assert "| below base | 2.83 | no |" in row and "-0.08, -0.12, -0.08" in row
    assert "80.00 ± 1.00" in markdown(t)
    noisy = _fake_runs(0.01, noise=0.002)
    small = build_table(noisy, list(noisy), _recipe(), 10)["variants"]["nose@noskip"]
    assert small["delta_top1_verdict"] == "not resolved" and small["delta_top1_paired"]["low"] < 0
    one = build_table({v: r[:1] for v, r in runs.items()}, list(runs), _recipe(), 10)
    assert "no error bars" in markdown(one) and one["variants"]["seend@all"]["delta_top1_exceeds_spread"] is None
    assert one["variants"]["seend@all"]["delta_top1_verdict"] == "not resolved"


def test_report_judges_each_of_the_papers_orderings():
    # paper top-1: base 77.2 > nose@noskip 77.1 > seend@all 76.2 > nose@all 75.8; every variant moves with the
    # seed by 1 point per seed; nose@noskip has 0.2 points of noise of its own
    shifts = {"base": 0.0, "nose@noskip": -0.001, "seend@all": -0.05, "nose@all": +0.05}
    noise = {"nose@noskip": [0.002, -0.002, 0.001]}
    runs = {v: [dict(seed=s, top1=0.8 + d + 0.01 * (s - 1) + noise.get(v, [0.0] * 3)[s], top5=0.95)
                for s in range(3)] for v, d in shifts.items()}
    t = build_table(runs, list(runs), _recipe(), 10)
    verdicts = {(p["higher"], p["lower"]): (p["verdict"], p["unpaired_verdict"]) for p in t["paper_orderings"]}
    assert verdicts == {("base", "nose@noskip"): ("not resolved", "within the spread"),
                        ("base", "seend@all"): ("reproduced", "reproduced"),
                        ("base", "nose@all"): ("contradicted", "contradicted"),
                        ("nose@noskip", "seend@all"): ("reproduced", "reproduced"),
                        ("nose@noskip", "nose@all"): ("contradicted", "contradicted"),
                        ("seend@all", "nose@all"): ("contradicted", "contradicted")}
    pair = next(p for p in t["paper_orderings"] if p["lower"] == "seend@all" and p["higher"] == "base")
    assert pair["paper_delta_top1"] == pytest.approx(1.0) and pair["delta_top1"] == pytest.approx(0.05)
    assert pair["paired"]["low"] == pytest.approx(0.05) == pair["paired"]["high"]  # the same 5 points on every seed
    md = markdown(t).split("## Against the paper's orderings")[1].split("## Cost")[0]
    assert "Of the 6 pairs" in md and "here: 2 reproduced" in md and "3 contradicted (it lies below 0)" in md
    assert "1 not resolved (it holds 0)" in md and "2 reproduced, 3 contradicted, 1 within the spread" in md
    assert "| EfficientNet-B0 > EfficientNet-B0-SEend@all | +1.0 | +5.00 | [+5.00, +5.00] | reproduced | 2.83 " \
           "| reproduced |" in md

    # a pair that shares one finished seed only has no interval: its direction is counted apart
    runs["nose@all"] = runs["nose@all"][:1]
    md = markdown(build_table(runs, list(runs), _recipe(), 10))
    assert "3 pairs share one finished seed only, no interval: 0 go the paper's way, 3 do not." in md

    # an unfinished ablation: a variant with one seed, base with three that the seed moves by 1 point each.
    # Seed 0 alone has seend@all 0.5 points below base, though its mean is 1.5 below base's: the paired
    # figures (verdict, the Δ columns beside the intervals) come from seed 0, not from the means
    part = {"base": [dict(seed=s, top1=0.8 + 0.01 * s, top5=0.95) for s in range(3)],
            "seend@all": [dict(seed=0, top1=0.795, top5=0.95)]}
    t = build_table(part, list(part), _recipe(), 10)
    assert t["variants"]["seend@all"]["delta_top1"] == pytest.approx(-0.015)
    assert t["paper_orderings"][0]["verdict"] == "same direction"
    md = markdown(t)
    assert "| EfficientNet-B0-SEend@all | -0.50 | n/a | -0.50 | not resolved |" in md
    assert "| EfficientNet-B0 > EfficientNet-B0-SEend@all | +1.0 | +0.50 | n/a | same direction |" in md
    part["seend@all"][0]["top1"] = 0.805  # above base on seed 0, still below base's mean
    t = build_table(part, list(part), _recipe(), 10)
    assert t["variants"]["seend@all"]["delta_top1"] < 0 and t["paper_orderings"][0]["verdict"] == "opposite direction"

    # the paper's tie (SEend@noskip and noSE@noskip, both 77.1) is no ordering; one seed: directions only
    one = {"seend@noskip": [dict(seed=0, top1=0.7, top5=0.9)], "nose@noskip": [dict(seed=0, top1=0.8, top5=0.9)],
           "nose@all": [dict(seed=0, top1=0.75, top5=0.9)]}
    t1 = build_table(one, list(one), _recipe(), 10)
    assert {(p["higher"], p["lower"], p["verdict"]) for p in t1["paper_orderings"]} == {
        ("seend@noskip", "nose@all", "opposite direction"), ("nose@noskip", "nose@all", "same direction")}
    assert "1 go the same way here and 1 do not" in markdown(t1)


def test_the_table_is_written_again_when_its_markdown_is_older_code(tmp_path):
    from tinyeffnet.experiments.runner import write_table_once
    runs = _fake_runs(0.01)
    table = build_table(runs, list(runs), _recipe(), 10)
    paths, wrote = write_table_once(table, str(tmp_path))
    assert wrote and not write_table_once(table, str(tmp_path))[1]  # the same table: left as it is
    with open(paths["md"], "w") as f:
        f.write("an older rendering of the same runs\n")  # table2.json unchanged
    assert write_table_once(table, str(tmp_path))[1]
    assert (tmp_path / "table2.md").read_text() == markdown(table)
