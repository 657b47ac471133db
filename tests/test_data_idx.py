"""IDX reading/writing and Fashion-MNIST file validation (28x28 grayscale,
10 classes, gzipped IDX files, as the official Fashion-MNIST release ships them)."""
import gzip
import os
import struct

import pytest

from data_tools.errors import DataError
from data_tools.fashion_mnist import CLASS_NAMES, read_split
from data_tools.idx import read_idx, write_idx


def write_fashion_files(folder, train=(6, 28), test=(4, 28), gz=True):
    """Tiny valid Fashion-MNIST file set; returns the train images bytes."""
    os.makedirs(folder, exist_ok=True)
    suffix = ".gz" if gz else ""
    out = {}
    for prefix, (count, side) in (("train", train), ("t10k", test)):
        images = bytes((i * 7) % 256 for i in range(count * side * side))
        labels = bytes(i % 10 for i in range(count))
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte{suffix}"), (count, side, side), images)
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{suffix}"), (count,), labels)
        out[prefix] = (images, labels)
    return out


@pytest.mark.parametrize("name", ["x-idx3-ubyte.gz", "x-idx3-ubyte"])
def test_round_trip_gzipped_and_plain(tmp_path, name):
    data = bytes(range(256)) * 3
    write_idx(tmp_path / name, (3, 16, 16), data)
    assert read_idx(tmp_path / name, 3) == ((3, 16, 16), data)


def test_gzip_output_is_byte_reproducible(tmp_path):
    data = bytes(range(200))
    write_idx(tmp_path / "a.gz", (200,), data)
    write_idx(tmp_path / "b.gz", (200,), data)
    blob = (tmp_path / "a.gz").read_bytes()
    assert blob == (tmp_path / "b.gz").read_bytes()
    assert blob[4:8] == b"\0\0\0\0"  # gzip mtime field


def test_gzip_is_detected_by_content_not_name(tmp_path):
    data = bytes(10)
    (tmp_path / "plain_name").write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + data))
    assert read_idx(tmp_path / "plain_name", 1) == ((10,), data)


@pytest.mark.parametrize("blob, message", [
    (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic number"),
    (b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00" * 4, "only unsigned bytes"),
    (b"\x00\x00\x08\x03" + struct.pack(">III", 1, 2, 2) + b"\x00" * 4, "3 dimensions, expected 1"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00" * 3, "truncated or damaged"),
    (b"\x00\x00\x08\x01\x00", "truncated inside its header"),
    (b"\x1f\x8bgarbage", "damaged gzip"),
])
def test_validation_errors_are_one_line(tmp_path, blob, message):
    (tmp_path / "f").write_bytes(blob)
    with pytest.raises(DataError, match=message) as info:
        read_idx(tmp_path / "f", 1)
    assert "\n" not in str(info.value)


def test_read_split_both_layouts(tmp_path):
    for gz in (True, False):
        folder = tmp_path / str(gz)
        written = write_fashion_files(folder, gz=gz)
        assert read_split(folder, "train") == written["train"]
        assert read_split(folder, "eval") == written["t10k"]  # eval split = official t10k


def test_read_split_errors(tmp_path):
    write_fashion_files(tmp_path / "wrong_side", train=(2, 27))
    with pytest.raises(DataError, match="27x27 images"):
        read_split(tmp_path / "wrong_side", "train")
    folder = tmp_path / "mismatch"
    write_fashion_files(folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", (5,), bytes(5))
    with pytest.raises(DataError, match="6 images but .* 5 labels"):
        read_split(folder, "train")
    write_idx(folder / "train-labels-idx1-ubyte.gz", (6,), bytes([0, 1, 2, 3, 4, 10]))
    with pytest.raises(DataError, match="label 10"):
        read_split(folder, "train")
    os.remove(folder / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="no Fashion-MNIST file t10k-images-idx3-ubyte"):
        read_split(folder, "eval")
    with pytest.raises(DataError, match="unknown split"):
        read_split(folder, "test")


def test_class_names():
    assert CLASS_NAMES == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
