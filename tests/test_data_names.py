"""Dataset names: default, fashion-mnist:DIR, imagenet:DIR, a bare DIR, and their errors."""
import pytest

from data_tools.errors import DataError
from data_tools.datasets import EMBEDDED_SUBSET, open_dataset, parse_data_name
from data_tools.synthetic import make_image_folder
from test_data_idx import write_fashion_files


def one_line_error(match, *args, **kwargs):
    with pytest.raises(DataError, match=match) as info:
        open_dataset(*args, **kwargs)
    assert "\n" not in str(info.value)


def test_parse_data_name():
    assert parse_data_name("default") == ("fashion-mnist", EMBEDDED_SUBSET)
    assert parse_data_name("fashion-mnist:/a/b") == ("fashion-mnist", "/a/b")
    assert parse_data_name("imagenet:/data/in1k") == ("imagenet", "/data/in1k")
    assert parse_data_name("/data/in1k") == ("imagenet", "/data/in1k")
    assert parse_data_name("./odd:name") == ("imagenet", "./odd:name")  # a colon inside a path


def test_errors(tmp_path):
    one_line_error("does not exist", str(tmp_path / "missing"), "train", 32)
    one_line_error("does not exist", f"imagenet:{tmp_path / 'missing'}", "train", 32)
    (tmp_path / "empty").mkdir()
    one_line_error("is empty", str(tmp_path / "empty"), "train", 32)
    one_line_error("is empty", f"fashion-mnist:{tmp_path / 'empty'}", "eval", 32)
    one_line_error("unknown dataset prefix 'cifar:'", "cifar:/data", "train", 32)
    one_line_error("names no directory", "imagenet:", "train", 32)
    one_line_error("empty dataset name", "", "train", 32)
    one_line_error("unknown split 'test'", "default", "test", 32)
    one_line_error("positive integer", "default", "train", 0)
    one_line_error("AutoAugment", "default", "train", 32, autoaugment=True)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "readme.txt").write_text("not a dataset")
    one_line_error("has no train folder", str(tmp_path / "flat"), "train", 32)


def test_fashion_mnist_dir(tmp_path):
    write_fashion_files(tmp_path)
    train = open_dataset(f"fashion-mnist:{tmp_path}", "train", 28)
    evaluation = open_dataset(f"fashion-mnist:{tmp_path}", "eval", 28)
    assert (len(train), len(evaluation), train.training, evaluation.training) == (6, 4, True, False)


def test_bare_dir_and_imagenet_prefix_are_image_folders(tmp_path):
    make_image_folder(tmp_path, classes=2, train_per_class=2, val_per_class=1, size=(40, 30), odd_files=False)
    for spec in (str(tmp_path), f"imagenet:{tmp_path}"):
        train = open_dataset(spec, "train", 16)
        assert (len(train), train.class_names) == (4, ("n00000000", "n00000001"))
        assert len(open_dataset(spec, "eval", 16)) == 2
