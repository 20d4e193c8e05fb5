"""`tunehand doctor` against a real server, real libmpv (ao=null) and a logged-in device."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.fixtures_server import ServerProc


def _tunehand(
    config: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tunehand", "--config-dir", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_doctor(start_server: Callable[..., ServerProc], tmp_path: Path) -> None:
    srv = start_server()
    srv.add_user("doc", "doc-pass-1")
    cfg = tmp_path / "device"
    cfg.mkdir()
    (cfg / "config.toml").write_text('[mpv_options]\nao = "null"\n')
    login = _tunehand(
        cfg,
        "login",
        srv.url,
        "--user",
        "doc",
        "--password-stdin",
        "--insecure-token-file",
        stdin="doc-pass-1\n",
    )
    assert login.returncode == 0, login.stderr
    r = _tunehand(cfg, "doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[1] for ln in lines] == ["libmpv", "audio", "keyring", "server", "login"]
    assert all(ln.startswith("ok") for ln in lines)
    assert "ao=null" in lines[1] and "clock offset" in lines[3] and "logged in as doc" in lines[4]

    wrong = _tunehand(cfg, "doctor", "--server", srv.url + "/v1")
    assert wrong.returncode == 1
    server_line = wrong.stdout.splitlines()[3]
    assert (
        server_line
        == f"FAIL server        {srv.url}/v1 is not a tunehand server root (try {srv.url})"
    )

    srv.stop()
    down = _tunehand(cfg, "doctor")
    assert down.returncode == 1
    failed = [ln for ln in down.stdout.splitlines() if ln.startswith("FAIL")]
    assert [ln.split()[1] for ln in failed] == ["server", "login"]
    assert "tunehand serve" in failed[0]  # the fix is named
    assert "Traceback" not in down.stderr


def test_doctor_keeps_audio_library_noise_out_of_the_report(tmp_path: Path) -> None:
    """ALSA lib writes straight to fd 2 when mpv opens a device that does not exist; the
    report sums it up in its line, and `--verbose` shows the captured log."""
    cfg = tmp_path / "device"
    cfg.mkdir()
    (cfg / "config.toml").write_text(
        '[mpv_options]\nao = "alsa"\naudio-device = "alsa/tunehand-no-such-pcm"\n'
    )
    r = _tunehand(cfg, "doctor")
    assert r.returncode == 1
    assert r.stderr == ""  # nothing from ALSA, JACK or PipeWire, no traceback
    assert "ALSA lib" not in r.stdout and "jack" not in r.stdout.lower()
    lines = r.stdout.splitlines()
    assert [ln.split()[1] for ln in lines] == ["libmpv", "audio", "keyring", "server", "login"]
    audio = lines[1]
    assert audio.startswith("FAIL audio output  mpv opened no audio output")
    assert "tried alsa" in audio and "ALSA has no device 'tunehand-no-such-pcm'" in audio
    assert "--verbose" in audio

    verbose = _tunehand(cfg, "doctor", "--verbose")
    assert verbose.returncode == 1 and verbose.stderr == ""
    report, _, log = verbose.stdout.partition("\nthe audio check's log")
    assert report.splitlines() == lines
    assert "stderr: ALSA lib" in log and "Unknown PCM tunehand-no-such-pcm" in log
    assert "mpv [error] ao/alsa: Playback open error" in log
