"""benchmarks.bench_polarity on the session's tiny chain: whole recordings re-read from the
store's own source, run upright, flipped (auto) and declared up."""
import json

import pytest

from benchmarks import bench_polarity

pytestmark = pytest.mark.slow


def test_auto_reads_a_flipped_recording_as_its_mirror(export_dir, qstore, tmp_path, capsys):
    out = tmp_path / "pol.json"
    assert bench_polarity.main(["--model", str(export_dir), "--store", str(qstore), "--split", "test",
                                "--vote-windows", "3", "--json", str(out)]) == 0
    (r,) = json.loads(out.read_text())["sets"]
    n_test = len(json.loads((qstore / "index.json").read_text())["split_subjects"]["test"])
    assert r["recordings"] == n_test >= 1
    # the vote is symmetric except for ties, which keep the contract's way up
    assert 0 <= r["auto_right_flipped"] <= r["auto_right_upright"] <= n_test
    assert r["windows_shown"]["declared"] > 0 and r["hr_mae_declared_up"] is not None
    assert "auto right" in capsys.readouterr().out
    assert bench_polarity.main(["--model", str(tmp_path / "none"), "--store", str(qstore)]) == 2
    assert "bench_polarity: error:" in capsys.readouterr().err
    assert bench_polarity.main(["--model", str(export_dir), "--store", str(qstore), "--split", "holdout"]) == 2
    assert f"{qstore}: no split 'holdout' in index.json" in capsys.readouterr().err
