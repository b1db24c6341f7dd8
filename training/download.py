"""`anyppg data download`: fetch a public dataset as its publisher serves it, every file verified.

    anyppg data download bidmc --out DIR [--mirror URL_OR_DIR] [--all]

PhysioNet serves `SHA256SUMS.txt` beside each dataset's files (lines `<sha256>  <path>`). The
download reads that list first, then fetches each selected file to a temp name in its target
folder while hashing it, and renames it into place only when its sha256 matches the list. A
file whose hash differs is deleted and reported in one line (path, expected and received hash,
source); the other files still download and the command exits 1. A file already present with
the right hash is not fetched again, so an interrupted download resumes. The checksum list is
written to DIR last, as the record of what was verified.

--mirror takes another base URL (http, https, file) or a local folder laid out as PhysioNet
serves the dataset (tests use one). BIDMC: by default only the CSV format (`bidmc_csv/`, what
`anyppg data prepare --source bidmc` reads); --all fetches every format (WFDB, MATLAB too).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

from anyppg.runs import atomic_write_text


@dataclass(frozen=True)
class Dataset:
    name: str
    url: str                  # base URL PhysioNet serves the files under (ends with /)
    include: tuple[str, ...]  # path prefixes fetched by default ('' = everything)
    about: str


DATASETS = {
    "bidmc": Dataset("bidmc", "https://physionet.org/files/bidmc/1.0.0/", ("bidmc_csv/",),
                     "BIDMC PPG and Respiration Dataset 1.0.0 (PhysioNet, ODC-By 1.0), 53 records"),
}
SUMS = "SHA256SUMS.txt"
_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(.+?)\s*$")
CHUNK = 1 << 16


class DownloadError(Exception):
    """One line: what failed and where."""


def _open(source: str, rel: str, timeout: float = 60.0) -> BinaryIO:
    """A readable stream of `rel` under `source` (a URL or a local folder)."""
    if re.match(r"^(https?|file)://", source):
        url = urllib.parse.urljoin(source if source.endswith("/") else source + "/", urllib.parse.quote(rel))
        try:
            return urllib.request.urlopen(url, timeout=timeout)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise DownloadError(f"{url}: {getattr(e, 'reason', None) or e}") from None
    p = Path(source) / rel
    try:
        return open(p, "rb")
    except OSError as e:
        raise DownloadError(f"{p}: {e.strerror or e}") from None


def parse_sums(text: str, where: str) -> dict[str, str]:
    """{relative path: sha256} from a sha256sum-style list; unsafe paths are refused."""
    out: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise DownloadError(f"{where}: line {i} is not '<sha256>  <path>': {line[:80]!r}")
        rel = m.group(2)
        pp = PurePosixPath(rel)
        if pp.is_absolute() or ".." in pp.parts:
            raise DownloadError(f"{where}: line {i}: refusing path outside the dataset: {rel!r}")
        out[rel] = m.group(1).lower()
    if not out:
        raise DownloadError(f"{where}: no checksums listed")
    return out


def fetch_verified(source: str, rel: str, expected: str, dest: Path) -> None:
    """Stream `rel` to a temp file beside `dest`, hashing it; rename only when the hash matches."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as f, _open(source, rel) as src:
            while True:
                b = src.read(CHUNK)
                if not b:
                    break
                h.update(b)
                f.write(b)
        got = h.hexdigest()
        if got != expected:
            raise DownloadError(f"{rel}: sha256 mismatch (expected {expected[:16]}..., got {got[:16]}...) "
                                f"from {source}; file discarded")
        os.replace(tmp, dest)
    except OSError as e:
        raise DownloadError(f"{rel}: {e.strerror or e} (from {source})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _already_there(dest: Path, expected: str) -> bool:
    if not dest.is_file():
        return False
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest() == expected


def download(ds: Dataset, out: Path, source: str, everything: bool = False,
             log: Callable[[str], None] = print) -> int:
    """Fetch and verify; returns the number of files that failed (0 = complete)."""
    with _open(source, SUMS) as f:
        sums_text = f.read().decode("utf-8", errors="replace")
    sums = parse_sums(sums_text, f"{source.rstrip('/')}/{SUMS}")
    wanted = {r: h for r, h in sums.items() if everything or any(r.startswith(p) for p in ds.include)}
    if not wanted:
        raise DownloadError(f"{source}: {SUMS} lists no files under {', '.join(ds.include)}")
    failed = fetched = kept = 0
    for i, (rel, sha) in enumerate(sorted(wanted.items()), 1):
        dest = out / rel
        if _already_there(dest, sha):
            kept += 1
            continue
        try:
            fetch_verified(source, rel, sha, dest)
            fetched += 1
        except DownloadError as e:
            failed += 1
            log(f"anyppg data download: error: {e}")
        if i % 20 == 0:
            log(f"  {i}/{len(wanted)} files")
    if not failed:
        atomic_write_text(out / SUMS, sums_text)
    log(f"{ds.name}: {fetched} fetched, {kept} already present and verified, {failed} failed "
        f"({len(wanted)} files, sha256 checked against {SUMS}) -> {out}")
    return failed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="anyppg data download", description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("--out", required=True, help="folder to fetch into (created)")
    p.add_argument("--mirror", help="another base URL or a local folder laid out as PhysioNet serves it")
    p.add_argument("--all", action="store_true", help="every file the checksum list names, all formats")
    args = p.parse_args(argv)
    ds = DATASETS[args.dataset]
    source = args.mirror or ds.url
    if not re.match(r"^(https?|file)://", source) and not Path(source).is_dir():
        print(f"anyppg data download: error: --mirror {source}: not a URL or an existing folder", file=sys.stderr)
        return 2
    print(f"{ds.about}\nfrom {source}")
    try:
        failed = download(ds, Path(args.out), source, args.all,
                          log=lambda m: print(m, file=sys.stderr if "error" in m else sys.stdout))
    except DownloadError as e:
        print(f"anyppg data download: error: {e}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
