"""python -m data_tools.bench: throughput measurement of the train loader."""
import json

from data_tools import bench


def test_run_data_bench_on_synthetic_photos():
    result = bench.run_data_bench("synthetic", workers=0, batch_size=4, image_size=32, steps=2)
    assert result["spec"] == "synthetic" and result["images_per_s"] > 0
    assert result["images_per_s_per_worker"] == result["images_per_s"] and result["main_process_cpu_ms_per_image"] > 0


def test_main_prints_json(capsys):
    assert bench.main(["--data", "default", "--workers", "0", "--batch-size", "8", "--image-size", "16",
                       "--steps", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["spec"] == "default" and result["images_per_s"] > 0


def test_main_reports_bad_spec_in_one_line(capsys, tmp_path):
    assert bench.main(["--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset directory") and err.count("\n") == 1
