"""benchmarks.bench_rates on the session's tiny chain: the same recordings at several sensor
rates through the stream, and its one-line errors."""
import json

import numpy as np
import pytest

from benchmarks import bench_rates

pytestmark = pytest.mark.slow


def test_rates_resample_and_score_the_same_recordings(export_dir, qstore, tmp_path, capsys):
    x = np.sin(np.arange(1000) / 7.0)
    assert np.array_equal(bench_rates.at_rate(x, 125.0, 125.0), x)           # its own rate: as it is
    assert len(bench_rates.at_rate(x, 125.0, 30.0)) == 240            # 1000 x 6 / 25
    out = tmp_path / "rates.json"
    assert bench_rates.main(["--model", str(export_dir), "--store", str(qstore), "--split", "test",
                             "--rates", "30,125", "--json", str(out)]) == 0
    (r,) = json.loads(out.read_text())["sets"]
    assert [c["rate_hz"] for c in r["rates"]] == [30.0, 125.0] and r["recordings"] >= 1
    shown = [c["windows_shown"] for c in r["rates"]]
    assert min(shown) > 0 and abs(shown[0] - shown[1]) <= max(2, shown[1] // 5)   # same recordings
    assert all(np.isfinite(c["hr_mae"]) for c in r["rates"])
    assert "30 Hz" in capsys.readouterr().out
    assert bench_rates.main(["--model", str(export_dir), "--store", str(qstore), "--rates", "30,x"]) == 2
    assert "--rates '30,x'" in capsys.readouterr().err
    assert bench_rates.main(["--model", str(export_dir), "--store", str(qstore), "--split", "test",
                             "--rates", "5"]) == 2
    assert "bench_rates: error:" in capsys.readouterr().err
