"""Issue 10: export measures parity on held-out windows or refuses; no silent fallback."""
import pytest

from .conftest import error_lines


@pytest.mark.parametrize("split", ["tset", "train"])
def test_parity_on_a_missing_or_training_split_is_an_error_before_conversion(tmp_path, qat_run, qstore,
                                                                             capsys, monkeypatch, split):
    from quantization import export

    def never(*a, **k):
        raise AssertionError("conversion started although the parity split is unusable")
    monkeypatch.setattr(export, "convert", never)
    out = tmp_path / "exp"
    rc = export.main(["--from", str(qat_run), "--data", str(qstore), "--out", str(out), "--quiet",
                      "--set", f"parity_split={split}"])
    err = error_lines(capsys.readouterr().err)
    assert rc == 1 and len(err) == 1 and "parity" in err[0] and split in err[0]
    assert not out.exists()
