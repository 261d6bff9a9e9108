"""``python -m grader weights status|synthetic|fetch|verify``: the VGG19 weights by hand.

    status              which weights the kit would use, their kind, hash and path
    synthetic [--force] write data/generated/vgg19_synthetic.mat
    fetch [--url URL]   download the real file into data/vgg19_data/ and verify it
    verify PATH         hash a file, say what it is and check its layout

:func:`fetch_real` downloads MatConvNet's file with resume (HTTP Range) and retries, and
renames it into place only once its size and sha256 match. Which file the kit uses is
decided by ``grader.kit.weights``; this module only reports on it and adds files.
"""
from __future__ import annotations

import argparse
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from pathlib import Path

from grader.kit.synthetic import check_layout, file_sha256, stderr_progress
from grader.kit.weights import (ENV_VAR, REAL_SHA256, REAL_SIZE, REAL_URL, SYNTHETIC_SHA256, kind_of,
                                real_weights_path, remember_sha256, resolve_weights, sha256_file,
                                synthetic_weights_path, write_synthetic_weights)

# --------------------------------------------------------------------------- fetch


class FetchError(RuntimeError):
    """Downloading the real weights failed; the message says what to do instead."""


class _DownloadProgress:
    """Percent, MB/s and ETA on a terminal; a line every ~10 % or 15 s otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.start_bytes = None
        self.last_t = 0.0
        self.last_fraction = -1.0

    def __call__(self, done: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.start_bytes is None:
            self.start_bytes = done
        fraction = done / self.total if self.total else 1.0
        rate = (done - self.start_bytes) / max(now - self.t0, 1e-6)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        eta_text = f"{eta:5.0f} s" if eta != float("inf") else "    ? s"
        line = (f"{100 * fraction:5.1f} %  {done / 1e6:8.1f}/{self.total / 1e6:.1f} MB  "
                f"{rate / 1e6:6.2f} MB/s  ETA {eta_text}")
        if self.tty:
            if final or now - self.last_t > 0.2:
                print("\r" + line, end="\n" if final else "", file=sys.stderr, flush=True)
                self.last_t = now
        elif final or fraction - self.last_fraction >= 0.1 or now - self.last_t > 15:
            print(line, file=sys.stderr, flush=True)
            self.last_t, self.last_fraction = now, fraction


class _ShortRead(ConnectionError):
    """The server closed the connection before sending the promised Content-Length."""


def fetch_real(dest: Path | None = None, url: str = REAL_URL, size: int = REAL_SIZE,
               sha256: str = REAL_SHA256, retries: int = 5, progress: bool = True, *,
               backoff: float = 2.0, timeout: float = 60.0) -> Path:
    """Download the real VGG19 weights to ``dest`` and verify size and sha256.

    Bytes go to ``dest.part`` first; an existing partial file is resumed with a Range
    request (a server that answers 200 instead of 206 restarts it). Network errors are
    retried ``retries`` times, waiting ``backoff * 2**attempt`` seconds. Only a verified
    file is renamed to ``dest``; a wrong size or hash removes the partial file.
    """
    dest = Path(dest) if dest is not None else real_weights_path()
    part = dest.with_name(dest.name + ".part")
    host = urllib.parse.urlsplit(url).hostname or url
    show = _DownloadProgress(size, progress)
    instead = f"place the file yourself at {dest} or set ${ENV_VAR}"

    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if offset > size:
            part.unlink()
            offset = 0
        if offset == size:
            break
        try:
            _download_into(part, url, offset, size, timeout, show)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                # The server cannot serve that range, so the partial file is not a
                # prefix of its file: start over.
                part.unlink()
                continue
            if exc.code < 500 or attempt >= retries:
                raise FetchError(f"{url} answered HTTP {exc.code} {exc.reason}; {instead}") from exc
            problem = f"HTTP {exc.code}"
        except urllib.error.URLError as exc:
            # urlopen wraps failures before a response arrives: DNS, refused, timeout.
            if isinstance(exc.reason, socket.gaierror) or attempt >= retries:
                # A failed name lookup is what an offline machine looks like; retrying
                # it only makes the user wait.
                raise FetchError(f"cannot reach {host}: the machine seems offline "
                                 f"({exc.reason}); {instead}") from exc
            problem = str(exc.reason)
        except PermissionError as exc:
            raise FetchError(f"cannot write {part}: {exc}; choose a writable place with ${ENV_VAR}") from exc
        except (OSError, HTTPException) as exc:
            # The transfer broke off midway; the partial file stays for the next try.
            if attempt >= retries:
                raise FetchError(f"downloading {url} failed after {retries + 1} attempts ({exc!r}); "
                                 f"run the command again to resume from {part}, or {instead}") from exc
            problem = repr(exc)
        delay = backoff * (2 ** attempt)
        attempt += 1
        print(f"download problem ({problem}); retrying in {delay:.2f} s "
              f"(attempt {attempt + 1} of {retries + 1})", file=sys.stderr)
        time.sleep(delay)

    got_size = part.stat().st_size
    if got_size != size:
        part.unlink()
        raise FetchError(f"{url} delivered {got_size} bytes, but the VGG19 file has {size}; "
                         f"the partial file was removed and nothing was written to {dest}")
    got_sha = file_sha256(part)
    if got_sha != sha256:
        part.unlink()
        raise FetchError(f"sha256 mismatch for {url}: got {got_sha}, expected {sha256}; "
                         f"the download was removed and nothing was written to {dest}")
    part.replace(dest)
    remember_sha256(dest, got_sha)
    return dest


def _download_into(part: Path, url: str, offset: int, size: int, timeout: float,
                   show: _DownloadProgress) -> None:
    headers = {"User-Agent": "aics-ch3-kit"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        part.parent.mkdir(parents=True, exist_ok=True)
        mode = "wb"
        if offset and resp.status == 206:
            content_range = resp.headers.get("Content-Range", "")
            if content_range.startswith(f"bytes {offset}-"):
                mode = "ab"
        # Any other answer (200, or a range that does not start where we stopped)
        # carries the whole file.
        start = offset if mode == "ab" else 0
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        done = start
        with open(part, mode) as f:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                show(done)
                if done > size:
                    break
        show(done, final=True)
        if expected is not None and done - start < expected and done <= size:
            # http.client returns b"" when the peer hangs up early instead of raising.
            raise _ShortRead(f"connection closed after {done - start} of {expected} bytes")


# --------------------------------------------------------------------------- command line


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader weights",
                                     description="Find, fetch, generate and verify VGG19 weights.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="which weights the kit would use")
    p_syn = sub.add_parser("synthetic", help=f"write {synthetic_weights_path()}")
    p_syn.add_argument("--force", action="store_true", help="rewrite even if the file is current")
    p_fetch = sub.add_parser("fetch", help=f"download the real weights to {real_weights_path()}")
    p_fetch.add_argument("--url", default=REAL_URL)
    p_verify = sub.add_parser("verify", help="hash a .mat file and check its layout")
    p_verify.add_argument("path", type=Path)
    args = parser.parse_args(argv)

    if args.command == "status":
        try:
            info = resolve_weights(generate=False)
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(info.banner())
        print(f"kind:   {info.kind}\nsource: {info.source}\nsha256: {info.sha256}\npath:   {info.path}")
        return 0

    if args.command == "synthetic":
        target = synthetic_weights_path()
        if target.is_file() and not args.force and sha256_file(target) == SYNTHETIC_SHA256:
            print(f"{target} is current (sha256 {SYNTHETIC_SHA256[:12]})")
            return 0
        t0 = time.monotonic()
        sha = write_synthetic_weights(target, progress=stderr_progress("writing synthetic VGG19"))
        print(f"wrote {target} in {time.monotonic() - t0:.1f} s (sha256 {sha})")
        if sha != SYNTHETIC_SHA256:
            print(f"warning: expected sha256 {SYNTHETIC_SHA256}; this numpy/scipy writes different "
                  "bytes, so goldens keyed by the synthetic fingerprint will not match", file=sys.stderr)
            return 1
        return 0

    if args.command == "fetch":
        try:
            dest = fetch_real(url=args.url)
        except FetchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"verified {dest} (sha256 {REAL_SHA256[:12]})")
        return 0

    # verify
    path: Path = args.path
    if not path.is_file():
        print(f"error: no file at {path}", file=sys.stderr)
        return 1
    sha = sha256_file(path)
    kind = kind_of(sha)
    print(f"{path}: {path.stat().st_size} bytes, sha256 {sha}, kind {kind}")
    if kind == "custom":
        problems = check_layout(path)
        for problem in problems:
            print(f"  layout: {problem}")
        if problems:
            return 1
        print("  layout: VGG19 in MatConvNet's layout (values unverified)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
