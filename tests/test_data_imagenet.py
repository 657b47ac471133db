"""ImageNet on disk: ImageFolder, flat val with
Kaggle or devkit labels, and the odd files that must decode to RGB or be skipped."""
import os
import random
import shutil

import pytest
from PIL import Image

from data_tools.augment import imagenet_train_image
from data_tools.eval_view import tf_eval_image
from data_tools.errors import DataError, UnreadableImage
from data_tools.loader import Loader
from data_tools.datasets import open_dataset
from data_tools.synthetic import class_names, make_image_folder, write_corrupt_jpeg, write_photo

SMALL = (64, 48)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagefolder")
    odd = make_image_folder(root, classes=3, train_per_class=3, val_per_class=2, size=SMALL)
    return root, odd


def test_odd_files_decode_to_rgb(folder):
    _, odd = folder
    assert Image.open(odd["cmyk"]).mode == "CMYK" and Image.open(odd["gray"]).mode == "L"
    assert Image.open(odd["png"]).format == "PNG"
    for kind in ("cmyk", "gray", "png"):
        for img in (tf_eval_image(odd[kind], 24), imagenet_train_image(odd[kind], 24, random.Random(0), True)):
            assert (img.mode, img.size) == ("RGB", (24, 24))
    with pytest.raises(UnreadableImage, match="odd_corrupt.JPEG"):
        tf_eval_image(odd["corrupt"], 24)


def test_cmyk_colours_survive(tmp_path):
    write_photo(tmp_path / "rgb.JPEG", random.Random(1), SMALL)
    Image.open(tmp_path / "rgb.JPEG").convert("CMYK").save(tmp_path / "cmyk.JPEG", quality=95)
    a = tf_eval_image(tmp_path / "rgb.JPEG", 16).tobytes()
    b = tf_eval_image(tmp_path / "cmyk.JPEG", 16).tobytes()
    assert sum(abs(x - y) for x, y in zip(a, b)) / len(a) < 8


def test_class_index_is_sorted_wnid_order(folder):
    root, _ = folder
    train = open_dataset(str(root), "train", 16)
    assert train.class_names == tuple(class_names(3))
    assert all(train.label(i) == train.class_names.index(os.path.basename(os.path.dirname(train.source(i))))
               for i in range(len(train)))


def test_corrupt_file_is_counted_and_the_epoch_completes(folder, caplog):
    root, odd = folder
    loader = Loader(open_dataset(str(root), "train", 16), batch_size=3, seed=0)
    for epoch in range(2):
        batches = list(loader.batches(epoch))
        assert len(batches) == loader.steps_per_epoch == len(loader.dataset) // 3
        assert all(b.valid == 3 and len(b.images) == 3 * 16 * 16 * 3 for b in batches)
    assert loader.unreadable_files.keys() == {odd["corrupt"]}
    assert loader.unreadable_count == 1
    assert sum("odd_corrupt.JPEG" in r.getMessage() for r in caplog.records) == 1  # once per file


def test_corrupt_eval_file_is_masked_not_duplicated(tmp_path):
    make_image_folder(tmp_path, classes=2, train_per_class=1, val_per_class=2, size=SMALL, odd_files=False)
    write_corrupt_jpeg(tmp_path / "val" / "n00000000" / "n00000000_1.JPEG", random.Random(0), SMALL)
    loader = Loader(open_dataset(str(tmp_path), "eval", 16), batch_size=4)
    (batch,) = loader.batches(0)
    assert batch.valid == 3 and list(batch.labels[:3]) == [0, 1, 1]
    assert loader.unreadable_count == 1


def flat_val(tmp_path, wnids_of_images):
    """train/<wnid>/ folders for every wnid plus a flat val/ with one image per entry."""
    rng = random.Random(0)
    for wnid in sorted(set(wnids_of_images)):
        os.makedirs(tmp_path / "train" / wnid)
        write_photo(tmp_path / "train" / wnid / "a.JPEG", rng, SMALL)
    os.makedirs(tmp_path / "val")
    for number in range(1, len(wnids_of_images) + 1):
        write_photo(tmp_path / "val" / f"ILSVRC2012_val_{number:08d}.JPEG", rng, SMALL)


WNIDS = ["n03000000", "n01000000", "n02000000", "n01000000"]  # wnid of val image 1, 2, 3, 4


def labels_of(root):
    dataset = open_dataset(str(root), "eval", 16)
    return [dataset.class_names[dataset.label(i)] for i in range(len(dataset))]


def test_flat_val_with_kaggle_csv(tmp_path):
    flat_val(tmp_path, WNIDS)
    rows = [f"ILSVRC2012_val_{i:08d},{w} 1 2 30 40 {w} 5 6 7 8" for i, w in enumerate(WNIDS, start=1)]
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows[::-1]) + "\n")
    assert labels_of(tmp_path) == WNIDS


def test_flat_val_with_devkit_ground_truth_in_devkit_order(tmp_path):
    flat_val(tmp_path, WNIDS)
    # Devkit id order differs from sorted order: id 1 = n03..., id 2 = n01..., id 3 = n02...
    (tmp_path / "ILSVRC2012_synsets.txt").write_text("n03000000\nn01000000\nn02000000\n")
    (tmp_path / "val" / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n2\n3\n2\n")
    dataset = open_dataset(str(tmp_path), "eval", 16)
    assert labels_of(tmp_path) == WNIDS
    # Class indices follow sorted wnids: n01 -> 0, n02 -> 1, n03 -> 2 (not the devkit ids - 1).
    assert [dataset.label(i) for i in range(4)] == [2, 0, 1, 0]


def test_devkit_ground_truth_without_synset_order_is_refused(tmp_path):
    flat_val(tmp_path, WNIDS)
    (tmp_path / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n2\n3\n2\n")
    with pytest.raises(DataError, match="no synset order file"):
        open_dataset(str(tmp_path), "eval", 16)


def test_flat_val_errors(tmp_path):
    flat_val(tmp_path, WNIDS)
    with pytest.raises(DataError, match="has no labels"):
        open_dataset(str(tmp_path), "eval", 16)
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n09999999 1 2 3 4\n")
    with pytest.raises(DataError, match="has no row in"):
        open_dataset(str(tmp_path), "eval", 16)
    rows = "".join(f"ILSVRC2012_val_{i:08d},n09999999 1 2 3 4\n" for i in range(1, 5))
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + rows)
    with pytest.raises(DataError, match="class n09999999 .* no folder"):
        open_dataset(str(tmp_path), "eval", 16)
    os.remove(tmp_path / "LOC_val_solution.csv")
    (tmp_path / "synset_order.txt").write_text("n03000000\nn01000000\nn02000000\n")
    (tmp_path / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n7\n3\n2\n")
    with pytest.raises(DataError, match="line 2: class id 7 is outside 1..3"):
        open_dataset(str(tmp_path), "eval", 16)


def test_kaggle_download_layout(tmp_path):
    inner = tmp_path / "ILSVRC" / "Data" / "CLS-LOC"
    flat_val(inner, WNIDS)
    rows = "".join(f"ILSVRC2012_val_{i:08d},{w} 1 2 3 4\n" for i, w in enumerate(WNIDS, start=1))
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + rows)
    assert labels_of(tmp_path) == WNIDS
    assert len(open_dataset(f"imagenet:{tmp_path}", "train", 16)) == 3


def test_image_folder_val_and_missing_val(tmp_path):
    make_image_folder(tmp_path, classes=2, train_per_class=1, val_per_class=2, size=SMALL, odd_files=False)
    assert [open_dataset(str(tmp_path), "eval", 16).label(i) for i in range(4)] == [0, 0, 1, 1]
    shutil.rmtree(tmp_path / "val")
    with pytest.raises(DataError, match="has no val folder"):
        open_dataset(str(tmp_path), "eval", 16)
