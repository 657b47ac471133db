"""The EfficientNet family: exact parameter counts (the paper's Table II rounds them to
0.01M), MACs, variant names, state dicts, the summary CLI."""
import json
import os
import subprocess
import sys

import pytest

from tinyeffnet import Tensor
from tinyeffnet.model.efficientnet import block_specs, build_model, canonical_variant
from tinyeffnet.model.stages import summarize
from tinyeffnet.summary import main as summary_main

# Exact trainable parameters, 1000 classes; the paper's Table II: 5.29M, 5.16M, 4.91M, 4.78M, 5.11M, 4.83M, 4.65M
VARIANT_PARAMS = {
    "base": 5_288_548, "seend@noskip": 5_159_764, "seend@hasskip": 4_906_788, "seend@all": 4_778_004,
    "nose@noskip": 5_110_376, "nose@hasskip": 4_830_180, "nose@all": 4_652_008,
}
# Compound scaling (width, depth, resolution of the official EfficientNet code), 1000 classes
MODEL_PARAMS = {"b0": 5_288_548, "b1": 7_794_184, "b2": 9_109_994, "b3": 12_233_232, "b4": 19_341_616,
                "b5": 30_389_784, "b6": 43_040_704, "b7": 66_347_960}


@pytest.mark.parametrize("variant", sorted(VARIANT_PARAMS))
def test_variant_parameter_counts_are_exact(variant):
    net = build_model(variant, backend="meta")
    assert net.num_parameters() == VARIANT_PARAMS[variant]
    assert net.num_buffer_values() == 42_016


@pytest.mark.parametrize("model", sorted(MODEL_PARAMS))
def test_compound_scaling_parameter_counts_are_exact(model):
    assert build_model("base", model, backend="meta").num_parameters() == MODEL_PARAMS[model]


def test_b0_multiply_accumulates():
    s = summarize("base", "b0", 224)
    assert round(s["macs"] / 1e9, 3) == 0.386
    assert s["params"] == 5_288_548 and s["buffers"] == 42_016
    # Table I: resolutions and channels of each stage
    table = [(r["stage"], tuple(r["resolution"]), r["channels"], r["blocks"]) for r in s["stages"]]
    assert table == [(1, (224, 224), 32, 1), (2, (112, 112), 16, 1), (3, (112, 112), 24, 2),
                     (4, (56, 56), 40, 2), (5, (28, 28), 80, 3), (6, (14, 14), 112, 3),
                     (7, (14, 14), 192, 4), (8, (7, 7), 320, 1), (9, (7, 7), 1280, 1), (10, (1, 1), 1000, 1)]


def test_skip_blocks_of_b0():
    specs = block_specs()
    assert len(specs) == 16
    assert [i for i, s in enumerate(specs) if not s.has_skip] == [0, 1, 3, 5, 8, 11, 15]
    assert [round(s.drop_rate, 4) for s in specs][:3] == [0.0, 0.0125, 0.025]


@pytest.mark.parametrize("name,want", [
    ("base", "base"), ("BASE", "base"), ("EfficientNet-B0", "base"),
    ("EfficientNet-B0-SEend@noskip", "seend@noskip"), ("EfficienNet-B0-noSE@hasskip", "nose@hasskip"),
    ("SEEND@ALL", "seend@all"), ("nose@all", "nose@all"),
])
def test_variant_names(name, want):
    assert canonical_variant(name) == want


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown variant 'se@mid': choose one of base, seend@noskip"):
        build_model("se@mid", backend="meta")
    with pytest.raises(ValueError, match="unknown model 'b9'"):
        build_model("base", "b9", backend="meta")


def test_any_classes_and_input_size():
    net = build_model("nose@all", num_classes=7, width=0.25, depth=0.1).eval()
    assert net(Tensor.uniform(0, (2, 33, 21, 3), -1.0, 1.0)).shape == (2, 7)
    with pytest.raises(ValueError, match=r"NHWC RGB images \(N, H, W, 3\)"):
        net(Tensor.zeros((2, 3, 32, 32)))


def test_state_dict_names_are_stable_and_round_trip():
    net = build_model("seend@noskip", num_classes=5, width=0.25, depth=0.1, seed=1)
    sd = net.state_dict()
    for name in ["stem_conv.weight", "stem_bn.gamma", "stem_bn.moving_mean", "blocks.0.depthwise_conv.weight",
                 "blocks.0.se.reduce.weight", "blocks.0.se.reduce.bias", "blocks.1.expand_conv.weight",
                 "blocks.1.bn0.beta", "blocks.1.project_conv.weight", "blocks.1.bn2.moving_var",
                 "head_conv.weight", "head_bn.gamma", "fc.weight", "fc.bias"]:
        assert name in sd, name
    other = build_model("seend@noskip", num_classes=5, width=0.25, depth=0.1, seed=2)
    other.load_state_dict(sd)
    assert all(other.state_dict()[k].to_flat() == v.to_flat() for k, v in sd.items())
    with pytest.raises(KeyError, match="another variant"):
        build_model("nose@all", num_classes=5, width=0.25, depth=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"fc.weight has shape \(320, 5\) in the state but \(320, 6\)"):
        build_model("seend@noskip", num_classes=6, width=0.25, depth=0.1).load_state_dict(sd)


def test_summary_cli_json_and_table(capsys):
    assert summary_main(["--variant", "EfficientNet-B0-noSE@all", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"variant", "model", "params", "buffers", "macs"} <= set(out)
    assert out["variant"] == "nose@all" and out["params"] == 4_652_008
    assert summary_main(["--variant", "base"]) == 0
    text = capsys.readouterr().out
    assert "MBConv6, k5x5" in text and "5,288,548" in text and "0.386 G" in text


def test_summary_cli_bad_variant_is_one_line():
    out = subprocess.run([sys.executable, "-m", "tinyeffnet.summary", "--variant", "foo"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "unknown variant 'foo'" in out.stderr.strip().splitlines()[-1]


# ---------------------------------------------------------------- variants of your own
@pytest.mark.parametrize("name,want", [
    ("nose@stage2-7", "nose@stage2-7"), ("noSE@Stage2-7", "nose@stage2-7"), ("SEend@stage8", "seend@stage8"),
    ("seend@stage8-8", "seend@stage8"), ("EfficientNet-B0-seend@stage3-4", "seend@stage3-4"),
])
def test_stage_variant_names(name, want):
    assert canonical_variant(name) == want


@pytest.mark.parametrize("name", ["nose@stage1", "nose@stage9", "seend@stage5-3", "se@stage3", "nose@stage",
                                  "nose@stage2-", "nose@stages2-3"])
def test_bad_stage_variants_are_refused(name):
    with pytest.raises(ValueError, match=r"unknown variant .*seend@stage8, nose@stage2-7"):
        canonical_variant(name)


def test_stage_variants_change_exactly_their_stages():
    base = block_specs("base")
    only_last = block_specs("nose@stage2-7")
    assert [s.se_position for s in only_last] == [None] * 15 + ["dw"], "SE only in the last stage"
    moved = block_specs("seend@stage5")
    assert [i for i, (a, b) in enumerate(zip(base, moved)) if a != b] == [5, 6, 7]
    assert all(s.se_position == "end" for s in moved if s.stage == 5)
    assert [s.se_position for s in block_specs("nose@stage2-8")] == [s.se_position for s in block_specs("nose@all")]


def test_stage_variant_parameter_counts():
    assert build_model("nose@stage2-8", backend="meta").num_parameters() == VARIANT_PARAMS["nose@all"]
    assert build_model("nose@stage2-7", backend="meta").num_parameters() == 4_763_800
    assert build_model("seend@stage8", backend="meta").num_parameters() == 5_207_844
    tiny = build_model("nose@stage2-7", num_classes=10, width=0.25, depth=0.1, backend="meta")
    assert tiny.variant == "nose@stage2-7" and len(tiny.block_specs) == 7


def test_stage_variants_everywhere_a_variant_name_is_taken(capsys, tmp_path):
    from tinyeffnet.experiments.runner import parse_variants, recipe
    from tinyeffnet.experiments.table2 import build_table, markdown_table, write_report
    from tinyeffnet.training.config import TrainConfig
    assert parse_variants("noSE@stage2-7,base,seend@all") == ["base", "seend@all", "nose@stage2-7"]
    assert TrainConfig(variant="SEend@stage8").resolved().check().variant
    assert summary_main(["--variant", "nose@stage2-7"]) == 0
    assert "SE changed in blocks" in capsys.readouterr().out
    runs = {v: [dict(seed=0, top1=0.5, top5=0.9)] for v in ("base", "nose@stage2-7")}
    flags = recipe(TrainConfig(backend="python").resolved())
    table = build_table(runs, ["base", "nose@stage2-7"], flags, 10, width=0.25, depth=0.1)
    row = table["variants"]["nose@stage2-7"]
    assert row["paper"] is None and row["block_arch"] == "Fig. 1a+1b" and row["delta_top1"] == 0.0
    assert "EfficientNet-B0-noSE@stage2-7 | Fig. 1a+1b" in markdown_table(table)
    assert all(os.path.isfile(p) for p in write_report(table, tmp_path).values())
    only_mine = build_table({"nose@stage2-7": runs["nose@stage2-7"]}, ["nose@stage2-7"], flags, 10)
    (tmp_path / "mine").mkdir()
    assert os.path.isfile(write_report(only_mine, tmp_path / "mine")["png"]), "a chart with no paper variant"
