"""benchmarks.readme_tables: the README's tables come from run folders, never typed by hand."""
from benchmarks import readme_tables as rt

PRE, RND = "runs/x/pretrain", "random:net1d-small"


def _res(v, ci=None, cov=None, metric="mae"):
    r = {"status": "ok", "value": v, "metric": metric}
    if ci:
        r["ci"] = ci
    if cov is not None:
        r["coverage"] = cov
    return r


def _probe():
    hr = {"status": "ok", "metric": "mae", "n_subjects": 9, "n_windows": 429,
          "encoders": {PRE: _res(2.65, [1.26, 4.52]), RND: _res(2.82, [1.1, 4.9])},
          "baselines": {"subject-mean": _res(7.80), "features": _res(1.88),
                        "hr-heartpy": _res(7.03, cov=0.62), "hr-heartpy+imp": _res(8.16),
                        "hr-spectral": _res(1.34, cov=1.0), "hr-spectral+imp": _res(1.34)},
          "paired": [{"method": PRE, "reference": RND, "diff": -0.16, "ci": [-0.76, 0.70], "verdict": "tie"},
                     {"method": "features", "reference": PRE, "diff": -0.45, "ci": [-0.70, -0.22],
                      "verdict": "better"}]}
    return {"encoders": [{"name": PRE}, {"name": RND}],
            "tasks": {"bidmc-hr": hr, "bidmc-spo2": {"status": "skipped: dataset not found"}}}


def test_teacher_probe_table_rows_and_paired_cells():
    lines = rt.teacher_probe_table(_probe())
    row = next(l for l in lines if l.startswith("| bidmc-hr | mae"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:7] == ["9 (429)", "2.65 [1.26, 4.52]", "2.82", "7.80", "1.88"]
    assert "1.34" in cells and "7.03 (62% cov.); 8.16 imputed" in cells      # imputed only when coverage < 1
    assert not any("bidmc-spo2" in l for l in lines)                        # a skipped task makes no row
    pair = next(l for l in lines if l.startswith("| bidmc-hr | -0.16"))
    assert "-0.16 [-0.76, +0.70] tie" in pair and "-0.45 [-0.70, -0.22] better" in pair


def test_missing_export_names_the_command_that_makes_it(tmp_path):
    out = rt.quant_tables(tmp_path)
    assert "missing" in out[0] and f"anyppg export --from {tmp_path}/qat" in out[0]
