"""Training configuration: presets fill what no flag gives, and bad values fail in one line."""
import pytest

from tinyeffnet.training.config import PRESETS, TrainConfig, build_parser, config_from_args


def resolved(*argv):
    return config_from_args(build_parser().parse_args(list(argv))).resolved()


def test_presets_follow_the_data_and_flags_win():
    assert resolved().preset == "default" and resolved("--data", "/x/imagenet").preset == "imagenet"
    assert resolved("--backend", "python").preset == "tiny"
    cfg = resolved("--augment", "full", "--lr", "0.1")
    assert (cfg.augment, cfg.lr, cfg.epochs) == ("full", 0.1, PRESETS["default"]["epochs"])
    assert resolved("--data", "/x/imagenet", "--batch-size", "256").lr == pytest.approx(0.05)  # 0.4 x 256 / 2048
    assert all(set(p) == set(PRESETS["imagenet"]) for p in PRESETS.values())


@pytest.mark.parametrize("argv, message", [
    (["--augment", "crop"], "--augment must be one of full, flip, none, got 'crop'"),
    (["--augment", "flip", "--autoaugment"], "--autoaugment is part of the full augmentation"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1)"),
    (["--epochs", "0"], "--epochs must be at least 1"),
])
def test_bad_values_are_one_clear_error(argv, message):
    with pytest.raises(ValueError) as e:
        resolved(*argv).check()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_help_names_every_flag_with_its_preset_values():
    text = build_parser().format_help()
    for name in TrainConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in text
