"""TLS end to end: `serve --certfile --keyfile`, and clients that verify the certificate
against a private CA given with `--ca-file` (and refuse the server without it)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures_server import ServerProc

PASSWORD = "tls-pass-1"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tunehand test CA",
        cwd=d,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=d,
    )
    return d


def _run(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tunehand", "--config-dir", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_tls_with_a_private_ca(
    start_server: Callable[..., ServerProc], pki: Path, tmp_path: Path
) -> None:
    srv = start_server(
        extra_args=("--certfile", str(pki / "server.pem"), "--keyfile", str(pki / "server.key"))
    )
    assert srv.url.startswith("https://127.0.0.1:")
    srv.add_user("tls", PASSWORD)
    cfg = tmp_path / "device"
    refused = _run(
        cfg,
        "login",
        srv.url,
        "--user",
        "tls",
        "--password-stdin",
        "--insecure-token-file",
        stdin=PASSWORD + "\n",
    )
    assert refused.returncode == 4, refused.stderr
    *warning, line = refused.stderr.strip().splitlines()
    assert len(warning) == 1 and "plain file" in warning[0]  # the opt-in's own warning
    assert "TLS failed" in line and "--ca-file" in line
    ok = _run(
        cfg,
        "--ca-file",
        str(pki / "ca.pem"),
        "login",
        srv.url,
        "--user",
        "tls",
        "--password-stdin",
        "--insecure-token-file",
        stdin=PASSWORD + "\n",
    )
    assert ok.returncode == 0, ok.stderr
    st = _run(cfg, "--ca-file", str(pki / "ca.pem"), "ctl", "status", "--json")
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["device"] is None
    # The websocket goes over TLS too (wss), verified the same way.
    watch = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunehand",
            "--config-dir",
            str(cfg),
            "--ca-file",
            str(pki / "ca.pem"),
            "ctl",
            "watch",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())
        assert first["version"] == json.loads(st.stdout)["version"]
    finally:
        watch.terminate()
        watch.wait(timeout=10)
    # The same, with `ca_file` in config.toml instead of the flag (requests and wss).
    config = cfg / "config.toml"
    before = config.read_text() if config.exists() else ""
    config.write_text(f"ca_file = {json.dumps(str(pki / 'ca.pem'))}\n" + before)
    st = _run(cfg, "ctl", "status", "--json")
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["device"] is None
    watch = subprocess.Popen(
        [sys.executable, "-m", "tunehand", "--config-dir", str(cfg), "ctl", "watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        assert json.loads(watch.stdout.readline())["version"] == json.loads(st.stdout)["version"]
    finally:
        watch.terminate()
        watch.wait(timeout=10)
    # and without it the same client refuses the server again
    config.write_text(before)
    refused = _run(cfg, "ctl", "status", "--json")
    assert refused.returncode == 4 and "TLS failed" in refused.stderr, refused.stderr


def test_web_login_cookies_are_secure_under_tls(
    start_server: Callable[..., ServerProc], pki: Path
) -> None:
    import ssl

    import httpx

    srv = start_server(
        extra_args=("--certfile", str(pki / "server.pem"), "--keyfile", str(pki / "server.key"))
    )
    srv.add_user("webtls", PASSWORD)
    ca = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with httpx.Client(verify=ca, headers={"Origin": srv.url}) as http:
        r = http.post(srv.url + "/v1/auth/web/login", json={"user": "webtls", "password": PASSWORD})
        assert r.status_code == 200, r.text
        cookies = {h.split("=", 1)[0]: h.lower() for h in r.headers.get_list("set-cookie")}
        assert set(cookies) == {"th_refresh", "th_csrf"}
        for header in cookies.values():
            assert "; secure" in header, header
        assert "httponly" in cookies["th_refresh"]
        again = http.post(
            srv.url + "/v1/auth/web/refresh",
            json={},
            headers={"X-CSRF-Token": http.cookies.get("th_csrf") or ""},
        )
        assert again.status_code == 200, again.text


def test_certfile_needs_keyfile(
    start_server: Callable[..., ServerProc], pki: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunehand",
            "serve",
            "--data-dir",
            str(data),
            "--port",
            "0",
            "--certfile",
            str(pki / "server.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "--keyfile" in r.stderr
    assert not data.exists()  # the arguments are checked before anything is written
