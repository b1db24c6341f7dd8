"""benchmarks.bench_af: AUROC with a subject bootstrap, paired, and one-line errors."""
import json

import numpy as np
import pytest

from benchmarks import bench_af
from training.metrics import auroc


def test_bootstrap_is_paired_and_covers_the_point_estimate():
    rng = np.random.default_rng(0)
    subject = np.repeat(np.arange(20), 10).astype(str)
    y = rng.uniform(size=200) < 0.3
    good = y + 0.8 * rng.standard_normal(200)
    bad = y + 3.0 * rng.standard_normal(200)
    b = bench_af.bootstrap(y, [good, bad], subject, n=400)
    assert len(b[0]) == len(b[1]) >= 390
    lo, hi = np.percentile(b[0], [2.5, 97.5])
    assert lo < auroc(y, good) < hi
    d = np.asarray(b[0]) - np.asarray(b[1])
    assert np.percentile(d, 2.5) > 0              # the better score wins on the same resamples
    same = bench_af.bootstrap(y, [good, good.copy()], subject, n=50)
    assert same[0] == same[1]


@pytest.mark.slow
def test_cli_on_the_session_store(export_dir, qstore, tmp_path, capsys):
    out = tmp_path / "af.json"
    rc = bench_af.main(["--model", str(export_dir / "model_int8.tflite"), "--store", str(qstore),
                        "--split", "test", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err      # the test subject has an AF episode and sinus
    r = json.loads(out.read_text())
    assert 0 <= r["models"][0]["auroc"] <= 1 and r["windows"] > r["af_windows"] > 0
    assert "AF AUROC" in capsys.readouterr().out
    assert bench_af.main(["--model", str(tmp_path / "none.tflite"), "--store", str(qstore)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench_af: error:") and len(err.strip().splitlines()) == 1
