"""A real int8 export through the runtime: verification, backends, the embedded sidecar, the
streaming API with inference, and `anyppg run`."""
import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.model import EdgeModel, readout
from edge_runtime.run_cli import main as run_main
from edge_runtime.sidecar import ModelFileError
from edge_runtime.spec import SignalSpec
from edge_runtime.stream import PPGStream, run_recording

pytestmark = pytest.mark.slow


def pulse(fs, seconds, hr_bpm=75.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(fs * seconds))) / fs
    f = hr_bpm / 60
    return 2.0 + np.sin(2 * np.pi * f * t) + 0.4 * np.sin(4 * np.pi * f * t + 1) + 0.02 * rng.standard_normal(len(t))


@pytest.fixture(scope="module")
def model(export_dir):
    return EdgeModel.load(export_dir, backend="ref")


@pytest.fixture()
def copy_export(export_dir, tmp_path):
    d = tmp_path / "export"
    d.mkdir()
    for f in ("model_int8.tflite", "model_int8.json"):
        shutil.copy(export_dir / f, d / f)
    return d


def test_outputs_are_read_by_name_from_the_sidecar(model, export_dir):
    sc = json.loads((export_dir / "model_int8.json").read_text())
    assert model.output_names == [o["name"] for o in sc["outputs"]]
    vals = readout(model.run(np.zeros(1250, np.float32)))
    assert vals["embedding"].ndim == 1 and "af_prob" in vals and "quality_prob" in vals
    assert "hr_confidence" not in vals or 0 <= vals["hr_confidence"] <= 1


def test_backends_agree(export_dir, test_windows):
    ref = EdgeModel.load(export_dir, backend="ref").run_batch(test_windows, raw=True)
    tfr = EdgeModel.load(export_dir, backend="tflite-runtime").run_batch(test_windows, raw=True)
    xnn = EdgeModel.load(export_dir, backend="xnnpack", threads=2).run_batch(test_windows, raw=True)
    assert np.array_equal(ref["embedding"], tfr["embedding"])
    for name in ref:
        a, b = ref[name].astype(int), tfr[name].astype(int)
        assert np.abs(a - b).max() <= 1, name              # rounding ties differ between versions
        assert np.abs(a - xnn[name].astype(int)).max() <= 2, name


def test_truncated_or_corrupt_file_is_refused(copy_export):
    f = copy_export / "model_int8.tflite"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="does not match its sidecar"):
        EdgeModel.load(copy_export)
    (copy_export / "model_int8.json").unlink()
    with pytest.raises(ModelFileError, match="corrupt|no sidecar|TFLite"):
        EdgeModel.load(copy_export)
    f.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a TFLite flatbuffer"):
        EdgeModel.load(f)


def _rewrite_sidecar(d, edit):
    p = d / "model_int8.json"
    sc = json.loads(p.read_text())
    edit(sc)
    p.write_text(json.dumps(sc))


def test_sidecar_that_does_not_match_its_file_is_named(copy_export):
    _rewrite_sidecar(copy_export, lambda sc: sc["outputs"][1].update(scale=sc["outputs"][1]["scale"] * 2))
    with pytest.raises(ModelFileError, match=r"output \w+ scale"):
        EdgeModel.load(copy_export)


def test_model_of_another_spec_is_refused(copy_export, export_dir):
    with pytest.raises(ModelFileError, match="ppg_fs: 100.0 vs 125.0"):
        EdgeModel.load(export_dir, expect_spec=SignalSpec(ppg_fs=100.0))
    _rewrite_sidecar(copy_export, lambda sc: sc["spec"].update(ppg_fs=100.0))
    with pytest.raises(ModelFileError, match="input ppg has shape"):
        EdgeModel.load(copy_export)


def test_embedded_sidecar_makes_one_self_describing_file(copy_export, test_windows):
    from quantization.tflite_edit import embed_sidecar
    f = copy_export / "model_int8.tflite"
    sc = json.loads((copy_export / "model_int8.json").read_text())
    emb, ext = embed_sidecar(f.read_bytes(), sc)
    assert embed_sidecar(emb, ext)[0] == emb                 # idempotent
    lone = copy_export / "lone.tflite"
    lone.write_bytes(emb)
    m = EdgeModel.load(lone, backend="ref")
    assert m.sidecar_source.endswith("metadata/anyppg_sidecar")
    ref = EdgeModel.load(copy_export, backend="ref").run_batch(test_windows[:4], raw=True)
    got = m.run_batch(test_windows[:4], raw=True)
    assert all(np.array_equal(ref[k], got[k]) for k in ref)
    bad = bytearray(emb)
    bad[len(bad) // 3] ^= 0x01
    lone.write_bytes(bytes(bad))
    with pytest.raises(ModelFileError, match="embedded sidecar|corrupt"):
        EdgeModel.load(lone)


def test_low_quality_windows_carry_no_number(model):
    x = pulse(64.0, 40)
    x[int(64 * 12):int(64 * 15)] = np.nan
    res, _ = run_recording(model, x, 64.0)
    assert res[1].status == "low_quality" and "nan_gap" in res[1].reasons
    assert "hr" not in res[1].values and res[1].embedding is None
    assert res[0].status in ("ok", "low_quality")
    if res[0].status == "ok":
        assert isinstance(res[0].values["hr"], float) and res[0].embedding is not None


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 900), max_size=15), fs=st.sampled_from([25.0, 64.0, 125.0]))
def test_model_results_do_not_depend_on_chunking(model, cuts, fs):
    x = pulse(fs, 31, seed=3)
    whole, _ = run_recording(model, x, fs)
    s = PPGStream(model, fs)
    got, i = [], 0
    for c in cuts + [len(x)]:
        got += s.push(x[i:i + c])
        i += c
    got += s.close()
    assert [r.row() for r in got] == [r.row() for r in whole]
    assert all(np.array_equal(a.embedding, b.embedding) for a, b in zip(got, whole) if a.embedding is not None)


def test_cli_runs_a_csv_and_writes_results(export_dir, tmp_path, capsys):
    fs = 64.0
    x = pulse(fs, 35)
    csv = tmp_path / "rec.csv"
    csv.write_text("time,pleth\n" + "\n".join(f"{i / fs:.6f},{v:.6f}" for i, v in enumerate(x)))
    out = tmp_path / "res.json"
    assert run_main(["--model", str(export_dir), "--input", str(csv), "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["fs_nominal"] == 64.0 and not d["timestamps"] and len(d["windows"]) == 3
    assert run_main(["--model", str(export_dir), "--input", str(csv), "--time-column", "time",
                     "--out", str(out)]) == 0
    assert json.loads(out.read_text())["timestamps"]
    assert run_main(["--model", str(export_dir), "--input", str(csv), "--fs", "64", "--time-column", "nope"]) == 2
    assert "no time column 'nope'" in capsys.readouterr().err
    assert run_main(["--model", str(export_dir), "--input", str(csv), "--fs", "0"]) == 2
    out_csv = tmp_path / "res.csv"
    assert run_main(["--model", str(export_dir), "--input", str(csv), "--ppg-column", "pleth",
                     "--fs", "64", "--chunk-s", "0.7", "--out", str(out_csv), "--quiet"]) == 0
    assert out_csv.read_text().count("\n") == 4
    # a sensor of the other polarity declared down gives the upright recording's results; auto
    # votes with the model's confidence on every inferred window of this 3-window recording
    runs = {}
    flipped = tmp_path / "flipped.csv"
    flipped.write_text("time,pleth\n" + "\n".join(f"{i / fs:.6f},{-v:.6f}" for i, v in enumerate(x)))
    for name, src, pol in (("up", csv, "up"), ("down", flipped, "down"), ("auto", flipped, "auto")):
        out = tmp_path / f"{name}.json"
        assert run_main(["--model", str(export_dir), "--input", str(src), "--polarity", pol,
                         "--out", str(out), "--quiet"]) == 0
        runs[name] = json.loads(out.read_text())
    assert runs["up"]["windows"] == runs["down"]["windows"]
    assert runs["down"]["polarity"]["polarity"] == "down" and runs["up"]["polarity"]["mode"] == "up"
    auto = runs["auto"]["polarity"]
    model_reasons = {"", "model_quality", "hr_confidence"}          # the model ran on these
    inferred = sum(set(w["reasons"].split(";")) <= model_reasons for w in runs["auto"]["windows"])
    assert auto["mode"] == "auto" and not auto["locked"] and auto["windows_voted"] == inferred >= 1
    assert auto["confidence_sum"]["up"] > 0 and auto["confidence_sum"]["down"] > 0


def test_sidecar_hr_refine_is_the_hr_the_stream_shows(copy_export, export_dir):
    from edge_runtime.hr_refine import HRRefine, refine_hr
    cfg = HRRefine(sigma_bpm=10.0, power=1.0, radius_bpm=40.0)

    def add_block(sc):
        sc["hr_refine"] = cfg.to_dict()
        sc["decision"] = {"quality_min_prob": 0.0, "hr_confidence_min": 0.0}   # show every number
    _rewrite_sidecar(copy_export, add_block)
    m = EdgeModel.load(copy_export, backend="ref")
    assert m.hr_refine == cfg and EdgeModel.load(export_dir).hr_refine == HRRefine.from_sidecar(
        json.loads((export_dir / "model_int8.json").read_text()))
    res, _ = run_recording(m, pulse(125.0, 60, hr_bpm=118.0), 125.0, keep_z=True)
    shown = [r for r in res if r.status == "ok"]
    assert len(shown) >= 4
    for r in shown:
        raw = readout(m.run(r.z))["hr"]
        assert r.values["hr_network"] == raw
        e = m.inputs["ppg"]
        x = m.quantize("ppg", r.z).reshape(-1).astype(np.float64) - e["zero_point"]
        assert r.values["hr"] == pytest.approx(refine_hr(x, raw, 125.0, cfg)[0], abs=1e-9)
        assert abs(r.values["hr"] - 118.0) < abs(raw - 118.0) or abs(raw - 118.0) > cfg.radius_bpm
    _rewrite_sidecar(copy_export, lambda sc: sc["hr_refine"].update(step_bpm=-1))
    with pytest.raises(ModelFileError, match="hr_refine: hr_refine.step_bpm must be a positive"):
        EdgeModel.load(copy_export)


def test_sidecar_polarity_is_the_streams_default_unless_declared(copy_export, export_dir):
    sc = json.loads((export_dir / "model_int8.json").read_text())
    assert EdgeModel.load(export_dir).polarity[0] == sc.get("polarity", {}).get("default", "up")
    _rewrite_sidecar(copy_export, lambda sc: sc.update(polarity={"default": "auto", "vote_windows": 3}))
    m = EdgeModel.load(copy_export, backend="ref")
    x = -pulse(125.0, 60)
    _, s = run_recording(m, x, 125.0)
    st = s.polarity.state()
    assert st["mode"] == "auto" and s.polarity.vote_windows == 3
    assert st["locked"] == (st["windows_voted"] == 3)
    _, s = run_recording(m, x, 125.0, polarity="up")                 # declared wins
    assert s.polarity.state()["mode"] == "up"
    _, s = run_recording(None, x, 125.0)                              # no model: the contract
    assert s.polarity.state()["mode"] == "up"
    _rewrite_sidecar(copy_export, lambda sc: sc["polarity"].update(default="sideways"))
    with pytest.raises(ModelFileError, match="sidecar polarity default 'sideways': one of up, down, auto"):
        EdgeModel.load(copy_export)
