"""Cached, checksummed downloads against an HTTP server on 127.0.0.1 started by the tests."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stereosr import hub
from stereosr.errors import InputError


class _Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[misc]

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "served"
    root.mkdir()
    srv = _Server(root)
    try:
        yield srv
    finally:
        srv.close()


def _serve(server: _Server, name: str, data: bytes) -> tuple[str, str]:
    (server.root / name).write_bytes(data)
    return server.url(name), hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("hash_len", [None, 8, 64])
def test_download_then_cache_hit(server: _Server, tmp_path: Path, hash_len: int | None) -> None:
    data = bytes(range(256)) * 4000  # ~1 MB
    url, digest = _serve(server, "blob-0.bin", data)
    cache = tmp_path / "cache"
    sha = None if hash_len is None else digest[:hash_len]
    path = hub.download(url, sha256=sha, cache_dir=cache)
    assert path == cache / "blob-0.bin"
    assert path.read_bytes() == data
    assert len(server.requests) == 1
    again = hub.download(url, sha256=sha, cache_dir=cache)
    assert again == path
    assert len(server.requests) == 1, "a cached file must not be requested again"
    assert [p.name for p in cache.iterdir()] == ["blob-0.bin"], "no temporary files left"


def test_cache_dir_from_environment(server: _Server, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    url, digest = _serve(server, "w.bin", b"weights")
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "envcache"))
    path = hub.download(url, sha256=digest)
    assert path == tmp_path / "envcache" / "w.bin"
    assert hub.resolve_cache_dir() == tmp_path / "envcache"
    monkeypatch.delenv(hub.CACHE_ENV)
    assert hub.resolve_cache_dir() == Path.home() / ".cache" / "stereosr"


def test_checksum_mismatch_removes_file(server: _Server, tmp_path: Path) -> None:
    url, digest = _serve(server, "bad.bin", b"x" * 5000)
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:8]
    cache = tmp_path / "cache"
    with pytest.raises(hub.DownloadError, match="checksum mismatch"):
        hub.download(url, sha256=wrong, cache_dir=cache)
    assert list(cache.iterdir()) == [], "a mismatching download must leave nothing behind"
    assert isinstance(hub.DownloadError("x"), InputError)


def test_verify_cached_detects_corruption(server: _Server, tmp_path: Path) -> None:
    url, digest = _serve(server, "c.bin", b"abc" * 100)
    cache = tmp_path / "cache"
    path = hub.download(url, sha256=digest, cache_dir=cache)
    path.write_bytes(b"corrupted")
    with pytest.raises(hub.DownloadError, match="delete it"):
        hub.download(url, sha256=digest, cache_dir=cache, verify_cached=True)


def test_http_error_and_network_failure(server: _Server, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(hub.DownloadError, match="HTTP 404"):
        hub.download(server.url("missing.bin"), cache_dir=cache)
    # A port nobody listens on: connection refused.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(hub.DownloadError, match="download of .* failed"):
        hub.download(f"http://127.0.0.1:{port}/x.bin", cache_dir=cache, timeout=5)
    assert not any(cache.iterdir())


def test_offline_mode(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = _serve(server, "o.bin", b"offline")
    cache = tmp_path / "cache"
    monkeypatch.setenv(hub.OFFLINE_ENV, "1")
    with pytest.raises(hub.DownloadError, match="forbids downloading"):
        hub.download(url, cache_dir=cache)
    assert server.requests == []
    monkeypatch.delenv(hub.OFFLINE_ENV)
    hub.download(url, cache_dir=cache)
    monkeypatch.setenv(hub.OFFLINE_ENV, "1")
    assert hub.download(url, cache_dir=cache).read_bytes() == b"offline"


def test_progress_bar_for_large_files(server: _Server, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = b"\x01" * (9 << 20)
    url, digest = _serve(server, "big.bin", data)
    path = hub.download(url, sha256=digest, cache_dir=tmp_path / "cache", progress=True)
    assert path.stat().st_size == len(data)
    assert "big.bin" in capsys.readouterr().err


def test_hash_prefix_from_url_and_bad_hash() -> None:
    assert hub.hash_prefix_from_url(
        "https://download.pytorch.org/models/vgg16-397923af.pth") == "397923af"
    assert hub.hash_prefix_from_url(
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth") == "7be5be79"
    assert hub.hash_prefix_from_url("https://example.org/model.pth") is None
    with pytest.raises(InputError, match="hex"):
        hub.download("https://example.org/m.pth", sha256="xyz")
    with pytest.raises(InputError, match="file name"):
        hub.download("https://example.org/")


def test_missing_official_file_explained_once(server: _Server, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline or unreachable, the message names the file, its URL and where to put it, once
    each, then the reason (not download's whole message again)."""
    cache = tmp_path / "cache"
    url = server.url("w-0123abcd.pth")
    target = cache / "w-0123abcd.pth"
    for offline in ("1", None):
        if offline:
            monkeypatch.setenv(hub.OFFLINE_ENV, offline)
        else:
            monkeypatch.delenv(hub.OFFLINE_ENV)
        with pytest.raises(InputError) as info:
            hub.download_or_explain(url, "0123abcd", "no weights", "pass weights=PATH",
                                    cache_dir=cache)
        msg = str(info.value)
        assert msg.count(str(target)) == 1 and msg.count(url) == 1, msg
        assert ("forbids downloading" if offline else "HTTP 404") in msg
