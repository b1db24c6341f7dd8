"""benchmarks.bench_watch_parity on the session's tiny chain: the bundle's example loop on the
host against the stream, window by window; a bundle whose C was generated for other thresholds
than its sidecar now carries is caught; one-line errors."""
import json

import pytest

from benchmarks import bench_watch_parity
from firmware_bridge import bundle
from firmware_bridge.dsp_check import missing_host_compiler

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing_host_compiler() is not None,
                                                   reason=str(missing_host_compiler()))]


@pytest.fixture(scope="module")
def fw(export_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("parity") / "fw"
    assert bundle.main(["--from", str(export_dir), "--out", str(out), "--quiet", "--set",
                        "measure_size=false"]) == 0
    return out


def run(fw, qstore, tmp_path, *extra):
    out = tmp_path / "parity.json"
    assert bench_watch_parity.main(["--firmware", str(fw), "--store", str(qstore), "--split", "test",
                                    "--json", str(out), *extra]) == 0
    (r,) = json.loads(out.read_text())["sets"]
    return r


def test_the_watch_shows_what_the_notebook_shows(fw, qstore, tmp_path, capsys):
    r = run(fw, qstore, tmp_path)
    assert r["recordings"] >= 1 and set(r["backends"]) == {"ref", "xnnpack"}
    ref = r["backends"]["ref"]
    assert ref["windows"] > 0 and ref["flags_equal"] == ref["windows"]
    # LiteRT's reference kernels are what the generated C reproduces (but for rounding ties)
    assert len(ref["decisions_differ"]) <= 1 and ref["hr_shown_both"] > 0
    assert ref["hr_max_abs_diff_bpm"] < 0.5
    assert 0 <= ref["hr_at_af_gate"] <= ref["hr_shown_watch"]      # the session export has a gate
    assert "notebook on LiteRT ref" in capsys.readouterr().out


def test_a_sidecar_out_of_step_with_the_c_is_caught(fw, qstore, tmp_path):
    side = fw / "model_int8.json"
    keep = side.read_text()
    edited = json.loads(keep)
    edited["decision"] = {**edited.get("decision", {}), "hr_confidence_min": 1.01}   # withhold every hr
    try:
        side.write_text(json.dumps(edited))
        ref = run(fw, qstore, tmp_path, "--backend", "ref")["backends"]["ref"]
    finally:
        side.write_text(keep)
    assert ref["hr_shown_watch"] > 0 and ref["hr_shown_both"] == 0
    assert len(ref["decisions_differ"]) == ref["hr_shown_watch"]


def test_bad_input_is_one_line(fw, qstore, tmp_path, capsys):
    assert bench_watch_parity.main(["--firmware", str(tmp_path), "--store", str(qstore)]) == 2
    assert "not a firmware bundle" in capsys.readouterr().err
    assert bench_watch_parity.main(["--firmware", str(fw), "--store", str(tmp_path)]) == 2
    assert "bench_watch_parity: error:" in capsys.readouterr().err
