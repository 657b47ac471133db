"""ImageNet-style folders (also any ImageFolder dataset): which file has which label.

Layouts understood (DIR is what the spec names):
- DIR/train/<wnid>/*.JPEG; class index = position of the wnid in the sorted folder list.
- DIR/val/<wnid>/*.JPEG (ImageFolder val), or DIR/val/*.JPEG flat, labelled by either
  - Kaggle's LOC_val_solution.csv (ImageId, PredictionString; the first token of the
    PredictionString is the wnid), or
  - the devkit's ILSVRC2012_validation_ground_truth.txt (line i = class id of
    ILSVRC2012_val_0000000i.JPEG) plus a synset order file ILSVRC2012_synsets.txt or
    synset_order.txt: one wnid per line, line k = the wnid of devkit id k. The devkit ids
    follow meta.mat's order, not sorted wnid order, so they are mapped through that file
    and never used as class indices. Make it once from the devkit (needs scipy):
      python -c "import scipy.io; s = scipy.io.loadmat('ILSVRC2012_devkit_t12/data/meta.mat', squeeze_me=True)['synsets']; print('\\n'.join(w for i, w in sorted(zip(s['ILSVRC2012_ID'], s['WNID'])) if i <= 1000))" > ILSVRC2012_synsets.txt
  Label files are looked for in DIR, DIR/val and DIR/ILSVRC2012_devkit_t12/data; when
  both kinds are present the Kaggle CSV wins.
- Kaggle's download unpacked as is: DIR/ILSVRC/Data/CLS-LOC/{train,val} with
  DIR/LOC_val_solution.csv.
"""
import csv
import os
import re
from array import array

from .augment import imagenet_train_image
from .errors import DataError
from .eval_view import TF_VIEW
from .labelled import LabelledImages
from .pixels import IMAGENET_MEAN, IMAGENET_STD, Normalization, rgb_bytes

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
KAGGLE_SOLUTION = "LOC_val_solution.csv"
NORMALIZATION = Normalization(IMAGENET_MEAN, IMAGENET_STD)
DEVKIT_GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
SYNSET_ORDER_FILES = ("ILSVRC2012_synsets.txt", "synset_order.txt")
KAGGLE_IMAGE_ROOT = os.path.join("ILSVRC", "Data", "CLS-LOC")
DEVKIT_DATA = os.path.join("ILSVRC2012_devkit_t12", "data")
CLASSES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classes.txt")
NUM_CLASSES = 1000


def imagenet_classes():
    """[(wnid, lemmas)] of the 1000 ImageNet-1k classes in class-index order (sorted wnids),
    from the shipped imagenet_classes.txt (its header says where it comes from)."""
    classes = []
    with open(CLASSES_FILE, encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                wnid, lemmas = line.rstrip("\n").split("\t", 1)
                classes.append((wnid, lemmas))
    if len(classes) != NUM_CLASSES:
        raise DataError(f"{CLASSES_FILE} lists {len(classes)} classes instead of {NUM_CLASSES}: reinstall tinyeffnet")
    return classes


def imagenet_class_names(names=None):
    """Readable names of ImageNet classes: all 1000 in class-index order, or, given a list
    of class names (a training run records its folders' wnids), each wnid replaced by its
    lemmas and anything else kept as it is."""
    classes = imagenet_classes()
    if names is None:
        return [lemmas for _, lemmas in classes]
    lemmas_of = dict(classes)
    return [lemmas_of.get(name, name) for name in names]


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _entries(folder):
    """(image file names, subfolder names) directly in `folder`, both sorted."""
    files, folders = [], []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_dir():
                folders.append(entry.name)
            elif _is_image(entry.name):
                files.append(entry.name)
    return sorted(files), sorted(folders)


def scan_class_folders(folder):
    """(class names, [(relative path, class name)]) of an ImageFolder `folder`."""
    files, classes = _entries(folder)
    if not classes:
        hint = "it holds images directly; " if files else ""
        raise DataError(f"{folder} has no class folders: {hint}expected {folder}/<class>/*.JPEG")
    samples = []
    for name in classes:
        class_files, _ = _entries(os.path.join(folder, name))
        samples.extend((os.path.join(name, f), name) for f in class_files)
    if not samples:
        raise DataError(f"no images in the class folders of {folder}: expected {folder}/<class>/*.JPEG "
                        f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    return classes, samples


def read_kaggle_solution(path):
    """{image id: wnid} from Kaggle's LOC_val_solution.csv."""
    labels = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header != ["ImageId", "PredictionString"]:
            raise DataError(f"{path} does not start with the header ImageId,PredictionString: "
                            f"expected Kaggle's LOC_val_solution.csv")
        for line, row in enumerate(rows, start=2):
            if len(row) != 2 or not row[1].split():
                raise DataError(f"{path} line {line}: expected 'ImageId,wnid x0 y0 x1 y1 ...', got {row!r}")
            labels[row[0]] = row[1].split()[0]
    return labels


def read_synset_order(path):
    """The wnids of a synset order file: entry k - 1 is the wnid of devkit id k."""
    with open(path) as f:
        order = [line.split()[0] for line in f if line.strip()]
    if len(set(order)) != len(order):
        raise DataError(f"{path} lists a wnid twice: it must hold one wnid per line in devkit id order")
    return order


def read_devkit_ground_truth(path, order, order_path):
    """Wnid of each val image from the devkit ground truth; entry i - 1 is image i's wnid."""
    wnids = []
    with open(path) as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                class_id = int(line)
            except ValueError:
                raise DataError(f"{path} line {line_number}: expected a class id, got {line.strip()!r}") from None
            if not 1 <= class_id <= len(order):
                raise DataError(f"{path} line {line_number}: class id {class_id} is outside 1..{len(order)} "
                                f"of the synset order file {order_path}")
            wnids.append(order[class_id - 1])
    return wnids


def _find(folders, names):
    for folder in folders:
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


def label_flat_val(val_dir, label_dirs):
    """[(file name, wnid)] of a flat val folder, from whichever label file is present."""
    files, _ = _entries(val_dir)
    kaggle = _find(label_dirs, [KAGGLE_SOLUTION])
    if kaggle:
        solution = read_kaggle_solution(kaggle)
        missing = [f for f in files if os.path.splitext(f)[0] not in solution]
        if missing:
            raise DataError(f"{missing[0]} (and {len(missing) - 1} more val images) has no row in {kaggle}")
        return [(f, solution[os.path.splitext(f)[0]]) for f in files]
    truth = _find(label_dirs, [DEVKIT_GROUND_TRUTH])
    if truth is None:
        raise DataError(f"flat validation folder {val_dir} has no labels: put {KAGGLE_SOLUTION} (Kaggle) or "
                        f"{DEVKIT_GROUND_TRUTH} plus {SYNSET_ORDER_FILES[0]} (devkit) next to it, "
                        f"or sort it into val/<wnid>/ folders")
    order_path = _find(label_dirs, SYNSET_ORDER_FILES)
    if order_path is None:
        raise DataError(f"found {truth} but no synset order file ({' or '.join(SYNSET_ORDER_FILES)}): its ids "
                        f"follow the devkit's meta.mat order, not sorted wnids; make one as data_tools/imagenet.py explains")
    wnids = read_devkit_ground_truth(truth, read_synset_order(order_path), order_path)
    labelled = []
    for f in files:
        number = re.search(r"(\d+)$", os.path.splitext(f)[0])
        if number is None or not 1 <= int(number.group(1)) <= len(wnids):
            raise DataError(f"val image {f} has no number 1..{len(wnids)} in its name, "
                            f"so {truth} cannot label it (expected ILSVRC2012_val_00000001.JPEG ...)")
        labelled.append((f, wnids[int(number.group(1)) - 1]))
    return labelled


class ImageFolderDataset(LabelledImages):
    """Loader-facing ImageNet-style split: decoded and augmented on demand, uint8 RGB."""

    normalization = NORMALIZATION

    def __init__(self, root, files, labels, class_names, image_size, training, autoaugment, description,
                 augment="full", eval_view=None):
        super().__init__(labels, image_size, training, description)
        self.root = root
        self.files = files
        self.class_names = tuple(class_names)
        self.autoaugment = autoaugment
        self.augment = augment
        self.eval_view = eval_view or TF_VIEW

    def source(self, index):
        return os.path.join(self.root, self.files[index])

    def example(self, index, rng):
        """Example `index` as uint8 HWC RGB bytes (`rng` drives augmentation); may raise UnreadableImage."""
        path = self.source(index)
        if self.training:
            img = imagenet_train_image(path, self.image_size, rng, self.autoaugment, self.augment)
        else:
            img = self.eval_view.image(path, self.image_size)
        return rgb_bytes(img)


def open_image_folder(directory, split, image_size, training, autoaugment=False, description=None,
                      augment="full", eval_view=None):
    """The `split` ('train' or 'eval') of the ImageNet-style dataset in `directory`."""
    if split not in ("train", "eval"):
        raise DataError(f"unknown split {split!r}: use 'train' or 'eval'")
    root = directory
    if os.path.isdir(os.path.join(directory, KAGGLE_IMAGE_ROOT)):
        root = os.path.join(directory, KAGGLE_IMAGE_ROOT)
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    if split == "train":
        if not os.path.isdir(train_dir):
            raise DataError(f"{directory} has no train folder: an ImageFolder dataset needs "
                            f"{train_dir}/<class>/*.JPEG")
        class_names, samples = scan_class_folders(train_dir)
        folder = train_dir
    else:
        if not os.path.isdir(val_dir):
            raise DataError(f"{directory} has no val folder: expected {val_dir}/<class>/*.JPEG "
                            f"or flat {val_dir}/*.JPEG files with a label file")
        # The train folders define the class indices of both splits, so they always agree.
        class_names = _entries(train_dir)[1] if os.path.isdir(train_dir) else None
        files, folders = _entries(val_dir)
        if files:
            label_dirs = list(dict.fromkeys([directory, root, val_dir, os.path.join(directory, DEVKIT_DATA)]))
            samples = label_flat_val(val_dir, label_dirs)
            class_names = class_names or sorted({wnid for _, wnid in samples})
        elif folders:
            val_classes, samples = scan_class_folders(val_dir)
            class_names = class_names or val_classes
        else:
            raise DataError(f"validation folder {val_dir} is empty: expected {val_dir}/<class>/*.JPEG "
                            f"or flat *.JPEG files with a label file")
        folder = val_dir
    index_of = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({name for _, name in samples if name not in index_of})
    if unknown:
        raise DataError(f"{split} images of class {unknown[0]} ({len(unknown)} unknown classes in all) "
                        f"have no folder in {train_dir}: train and val must use the same wnids")
    files = [path for path, _ in samples]
    labels = array("i", (index_of[name] for _, name in samples))
    return ImageFolderDataset(folder, files, labels, class_names, image_size, training, autoaugment,
                              description or f"{directory} ({split})", augment, eval_view)
