"""The C bundle carries the PPG input only: a model with a second input (the accelerometer) is
refused in one line that names the input, before anything is written."""
from __future__ import annotations

import json
import shutil

from firmware_bridge import bundle


def test_refuses_a_model_with_an_accel_input(export_dir, tmp_path, capsys):
    acc = tmp_path / "acc"
    shutil.copytree(export_dir, acc)
    side = json.loads((acc / "model_int8.json").read_text())
    ppg = side["inputs"][0]
    side["inputs"].append(dict(ppg, name="accel", position=1, shape=[1, ppg["shape"][1], 3]))
    (acc / "model_int8.json").write_text(json.dumps(side))
    assert bundle.main(["--from", str(acc), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "accel" in err and "only the PPG input" in err
    assert not (tmp_path / "o").exists()
