"""predict over files and folders: batched through one compiled program, in order, streamed as
text, JSON Lines or CSV; unreadable files reported and counted; bad input one line, exit 2;
a reader that stops reading ends the command quietly."""
import csv
import io
import json
import os
import subprocess
import sys

import pytest

from tinyeffnet.convert import main as convert_main
from tinyeffnet.predict import main as predict_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "tf_efficientnet_b0.w010.safetensors")

pytest.importorskip("jax")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "tf.safetensors"
    assert convert_main(["--from", "timm", FIXTURE, "--out", str(out), "--width", "0.1", "--depth", "0.1",
                         "--image-size", "48"]) == 0
    return str(out)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of 7 photos (some in subfolders), a text file and an unreadable .jpg."""
    from PIL import Image
    root = tmp_path_factory.mktemp("photos")
    (root / "b" / "deeper").mkdir(parents=True)
    (root / "a").mkdir()
    names = ["z.jpg", "a/2.png", "a/10.JPEG", "b/x.jpg", "b/deeper/y.png", "b/deeper/w.webp", "m.bmp"]
    for i, name in enumerate(names):
        size = (60 + 13 * i, 90 - 7 * i)
        Image.effect_mandelbrot(size, (-2.0 + 0.2 * i, -1.2, 1.0, 1.2), 40 + i).convert("RGB").save(root / name)
    (root / "notes.txt").write_text("not an image, not an image extension")
    (root / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    return root, sorted(str(root / n) for n in names + ["b/broken.jpg"])


def _lines(capsys):
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err.strip().splitlines()


def test_a_folder_in_batches_gives_what_each_image_alone_gives(checkpoint, photos, capsys):
    root, files = photos
    broken = str(root / "b" / "broken.jpg")
    status = predict_main(["--checkpoint", checkpoint, str(root), "--batch-size", "3", "--workers", "2", "--json"])
    out, err = _lines(capsys)
    assert status == 1  # one file could not be read; the others have results
    records = [json.loads(line) for line in out]
    assert [r["image"] for r in records] == files  # sorted, recursive, in order, the unreadable one too
    assert [set(r) for r in records if r["image"] == broken] == [{"image", "error"}]
    assert records[files.index(broken)]["error"].startswith(f"{broken} is not a readable image")
    assert len(err) == 2 and err[0].startswith(f"error: {broken} is not a readable image")
    assert err[1] == "error: 1 of 8 image files could not be read (each named above); the others have their results"
    batched = [r for r in records if "top" in r]
    assert len(batched) == 7
    for result in batched:
        assert predict_main(["--checkpoint", checkpoint, result["image"], "--batch-size", "1", "--json"]) == 0
        alone = json.loads(capsys.readouterr().out)
        assert [t["class_index"] for t in alone["top"]] == [t["class_index"] for t in result["top"]], result["image"]
        for a, b in zip(alone["top"], result["top"]):
            assert abs(a["probability"] - b["probability"]) <= 1e-6 * b["probability"] + 1e-9


def test_text_and_csv_carry_the_same_results(checkpoint, photos, capsys):
    root, files = photos
    given = [files[0], str(root / "a")]  # a file and a folder
    assert predict_main(["--checkpoint", checkpoint] + given + ["--json", "--top", "3"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert predict_main(["--checkpoint", checkpoint] + given + ["--csv", "--top", "3"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["image", "class_index_1", "name_1", "probability_1", "class_index_2", "name_2",
                       "probability_2", "class_index_3", "name_3", "probability_3", "error"]
    assert len(rows) == 1 + len(results)
    for row, result in zip(rows[1:], results):
        assert row[0] == result["image"] and row[-1] == ""
        for rank, t in enumerate(result["top"]):
            assert (int(row[1 + 3 * rank]), row[2 + 3 * rank]) == (t["class_index"], t["name"])
            assert float(row[3 + 3 * rank]) == t["probability"]
    assert predict_main(["--checkpoint", checkpoint] + given + ["--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(results)
    for line, result in zip(lines, results):
        shown = " | ".join(f"{t['probability']:.2%} {t['name']}" for t in result["top"])
        assert line == f"{result['image']}: {shown}"


@pytest.mark.parametrize("args, says", [
    (["{missing}"], "does not exist: give image files or folders of images"),
    (["{empty}"], "is a folder without images"),
    (["{photo}", "--json", "--csv"], "--json and --csv are two formats"),
    (["{photo}", "--batch-size", "0"], "--batch-size must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(checkpoint, photos, tmp_path, capsys, args, says):
    root, files = photos
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no images here")
    paths = dict(missing=str(tmp_path / "nothing.jpg"), empty=str(tmp_path / "empty"), photo=files[0])
    try:
        code = predict_main(["--checkpoint", checkpoint] + [a.format(**paths) for a in args])
    except SystemExit as e:  # argparse's errors exit from inside
        code = e.code
    out, err = _lines(capsys)
    assert code == 2 and out == [] and len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


def test_a_reader_that_stops_reading_ends_the_command_quietly(checkpoint, photos):
    root, _ = photos
    # --top 1000 as JSON: each line is far larger than a pipe's buffer, so the write after
    # the reader has gone fails (EPIPE) at once
    process = subprocess.Popen([sys.executable, "-m", "tinyeffnet.predict", "--checkpoint", checkpoint, str(root),
                                "--top", "1000", "--json", "--batch-size", "2"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.readline()
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141, err
    assert json.loads(first)["image"].endswith("10.JPEG") and "Traceback" not in err and "BrokenPipe" not in err, err


def test_every_command_ends_quietly_when_stdout_closes():
    code = ("from tinyeffnet._cli import run_command\n"
            "def main():\n"
            "    for _ in range(1000):\n"
            "        print('x' * 10000)\n"
            "    return 0\n"
            "run_command(main)\n")
    out = subprocess.run(f"{sys.executable} -c \"{code}\" | head -c 10 > /dev/null; echo ${{PIPESTATUS[0]}}",
                         shell=True, executable="/bin/bash", cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "141" and out.stderr == "", out.stderr


def test_the_progress_bar_shows_on_a_terminal_only():
    from tinyeffnet.predict import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    shown, hidden = Terminal(), io.StringIO()
    for stream in (shown, hidden):
        progress = Progress(4, stream)
        for _ in range(3):
            progress.advance()
            progress.draw()
        progress.clear()
    assert hidden.getvalue() == ""
    frames = shown.getvalue().split("\r")
    assert frames[3].startswith("[" + "#" * 22 + "." * 8 + "] 3/4 images, ") and frames[-1] == "\033[K"


def test_evaluate_feeds_photos_the_view_the_checkpoint_records(checkpoint, monkeypatch):
    from data_tools import DataError
    from data_tools.eval_view import TF_VIEW, EvalView
    from tinyeffnet.training import evaluation
    asked = []

    def opened(data, split, size, **options):
        asked.append((data, size, options.get("eval_view")))
        raise DataError("stop here")

    monkeypatch.setattr(evaluation, "open_dataset", opened)
    for data in ("imagenet:/photos", "default"):
        with pytest.raises(DataError, match="stop here"):
            evaluation.evaluate_checkpoint(checkpoint, data, "python")
    # photos: timm's view of tf_efficientnet_b0 as converted; other data: its own (Fashion-MNIST ignores views)
    assert asked == [("imagenet:/photos", 48, EvalView("resize-crop", 0.875, "bicubic")), ("default", 48, TF_VIEW)]


def test_unreadable_files_get_their_record_in_csv_and_the_count_says_what_is_left(checkpoint, photos, capsys):
    root, files = photos
    broken = str(root / "b" / "broken.jpg")
    assert predict_main(["--checkpoint", checkpoint, files[0], broken, "--csv", "--top", "2"]) == 1
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert [r[0] for r in rows[1:]] == [files[0], broken]
    assert rows[1][-1] == "" and rows[2][1:-1] == [""] * 6 and "is not a readable image" in rows[2][-1]
    assert predict_main(["--checkpoint", checkpoint, broken]) == 1
    out, err = _lines(capsys)
    assert out == [] and err[-1] == "error: the image file could not be read (named above)"


def test_a_pytorch_pickle_or_a_hub_folder_given_as_checkpoint_is_named_and_convert_suggested(photos, tmp_path,
                                                                                            capsys):
    root, files = photos
    pickle = tmp_path / "model.pth"
    pickle.write_bytes(b"PK\x03\x04" + bytes(64))  # what torch.save writes: a zip archive
    assert predict_main(["--checkpoint", str(pickle), files[0]]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "is a PyTorch pickle" in line and "python -m tinyeffnet.convert" in line
    hub = tmp_path / "hub"
    hub.mkdir()
    import shutil
    shutil.copy(FIXTURE, hub / "model.safetensors")  # a published timm state dict, not converted
    assert predict_main(["--checkpoint", str(hub), files[0]]) == 2
    line = capsys.readouterr().err.strip()
    assert "no 'tinyeffnet' metadata" in line and "python -m tinyeffnet.convert" in line, line


def test_the_python_api_classifies_as_predict_does(checkpoint, photos, tmp_path, capsys):
    """tinyeffnet.load + classify give predict's classes and probabilities, for paths and Pillow images;
    load takes the folder convert wrote into."""
    import shutil

    from PIL import Image

    import tinyeffnet
    root, files = photos
    folder = tmp_path / "converted"
    folder.mkdir()
    shutil.copy(checkpoint, folder / "weights.safetensors")
    net = tinyeffnet.load(str(folder))
    assert net.spec.resolution == 48 and net.spec.num_classes == 1000
    readable = [f for f in files if not f.endswith("broken.jpg")][:3]
    assert predict_main(["--checkpoint", checkpoint] + readable + ["--json", "--top", "3"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    with Image.open(readable[0]) as img:
        in_memory = img.copy()
    got = tinyeffnet.classify(net, readable + [in_memory], top=3, batch_size=2)
    assert [p.image for p in got[:3]] == readable and got[3].image is in_memory
    for p, want in zip(got, printed + printed[:1]):  # the Pillow image is the first file decoded already
        assert p.error is None and [c.index for c in p.top] == [t["class_index"] for t in want["top"]]
        assert [c.name for c in p.top] == [t["name"] for t in want["top"]]
        for c, t in zip(p.top, want["top"]):
            assert abs(c.probability - t["probability"]) <= 1e-6 * t["probability"] + 1e-9
    missing = tinyeffnet.classify(net, [readable[0]], top=1)
    assert len(missing) == 1 and missing[0].top[0].index == printed[0]["top"][0]["class_index"]
