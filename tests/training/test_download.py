"""`anyppg data download`: every file checked against the SHA256SUMS.txt served beside it.

The mirror is a local folder (and the same folder over HTTP on localhost) laid out as PhysioNet
serves BIDMC, written by the test together with its checksum list."""
from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from training import download

FILES = {
    "bidmc_csv/bidmc_01_Signals.csv": b"Time [s], RESP, PLETH, II\n0,0.1,0.5,0.2\n0.008,0.1,0.6,0.3\n",
    "bidmc_csv/bidmc_01_Numerics.csv": b"Time [s], HR, PULSE, RESP, SpO2\n0,80,80,16,97\n",
    "bidmc_csv/bidmc_01_Fix.txt": b"Age: 88\nGender: F\n",
    "bidmc01.hea": b"bidmc01 5 125 60001\n",     # WFDB format: only with --all
}


def make_mirror(root: Path, corrupt: str | None = None) -> Path:
    lines = []
    for rel, data in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {rel}")
        p.write_bytes(data + b"tampered" if rel == corrupt else data)
    (root / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")
    return root


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_download_from_folder_verifies_and_resumes(tmp_path, capsys):
    mirror = make_mirror(tmp_path / "mirror")
    out = tmp_path / "bidmc"
    assert download.main(["bidmc", "--out", str(out), "--mirror", str(mirror)]) == 0
    for rel, data in FILES.items():
        if rel.startswith("bidmc_csv/"):
            assert (out / rel).read_bytes() == data
    assert not (out / "bidmc01.hea").exists()            # CSV format only by default
    assert (out / "SHA256SUMS.txt").is_file()
    capsys.readouterr()
    assert download.main(["bidmc", "--out", str(out), "--mirror", str(mirror)]) == 0
    assert "0 fetched, 3 already present" in capsys.readouterr().out


def test_corrupted_file_is_caught_in_one_line_and_nothing_half_written(tmp_path, capsys):
    bad = "bidmc_csv/bidmc_01_Numerics.csv"
    mirror = make_mirror(tmp_path / "mirror", corrupt=bad)
    out = tmp_path / "bidmc"
    assert download.main(["bidmc", "--out", str(out), "--mirror", str(mirror)]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and bad in err[0] and "sha256 mismatch" in err[0]
    assert not (out / bad).exists() and not leftovers(out)
    assert (out / "bidmc_csv/bidmc_01_Signals.csv").is_file()
    assert not (out / "SHA256SUMS.txt").exists()          # not recorded as complete
    make_mirror(mirror)                                     # the mirror is repaired: resume
    assert download.main(["bidmc", "--out", str(out), "--mirror", str(mirror)]) == 0
    assert (out / bad).read_bytes() == FILES[bad]


def test_download_over_http_with_all_formats(tmp_path):
    mirror = make_mirror(tmp_path / "mirror")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        out = tmp_path / "bidmc"
        assert download.main(["bidmc", "--out", str(out), "--mirror", url, "--all"]) == 0
        assert (out / "bidmc01.hea").read_bytes() == FILES["bidmc01.hea"]
        assert download.main(["bidmc", "--out", str(tmp_path / "x"), "--mirror", url + "missing/"]) == 1
    finally:
        server.shutdown()


@pytest.mark.parametrize("sums, msg", [("abc  file.csv\n", "is not '<sha256>  <path>'"),
                                       ("0" * 64 + "  ../etc/passwd\n", "outside the dataset")])
def test_bad_checksum_list_is_refused(tmp_path, capsys, sums, msg):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "SHA256SUMS.txt").write_text(sums)
    assert download.main(["bidmc", "--out", str(tmp_path / "o"), "--mirror", str(mirror)]) == 1
    assert msg in capsys.readouterr().err
