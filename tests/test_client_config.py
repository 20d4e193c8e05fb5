"""Config dir resolution, config.toml parsing and editing, and the device id."""

from __future__ import annotations

import socket
import stat
import tomllib
from pathlib import Path

import pytest

from tunehand.client.config import (
    Config,
    default_device_name,
    device_id,
    load_config,
    resolve_config_dir,
    save_device_id,
    save_server,
    stored_device_id,
)
from tunehand.errors import AuthError, ConfigError, UsageError


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_config(config_dir: Path, text: str) -> Path:
    config_dir.mkdir(exist_ok=True)
    path = config_dir / "config.toml"
    path.write_text(text)
    return path


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message
    assert "\n" not in message
    return message


# resolve_config_dir


def test_cli_value_wins_over_env(tmp_path: Path) -> None:
    env = {"TUNEHAND_CONFIG_DIR": str(tmp_path / "env")}
    assert resolve_config_dir(str(tmp_path / "cli"), env) == tmp_path / "cli"


def test_env_wins_over_platform_default(tmp_path: Path) -> None:
    env = {"TUNEHAND_CONFIG_DIR": str(tmp_path / "env")}
    assert resolve_config_dir(None, env) == tmp_path / "env"


def test_platform_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert resolve_config_dir(None, {}) == tmp_path / "xdg" / "tunehand"
    assert resolve_config_dir(None, {"TUNEHAND_CONFIG_DIR": ""}) == tmp_path / "xdg" / "tunehand"


def test_resolved_path_is_absolute_and_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert resolve_config_dir("~/th", {}) == tmp_path / "th"
    assert resolve_config_dir("rel", {}) == tmp_path / "rel"


def test_reading_creates_nothing(tmp_path: Path) -> None:
    config_dir = resolve_config_dir(str(tmp_path / "cfg"), {})
    assert load_config(config_dir) == Config()
    assert not config_dir.exists()


# load_config


def test_full_config(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        """
server = "https://music.example.org"
device_name = "kitchen"
theme = "nord"
ca_file = "/etc/ssl/my-ca.pem"
notifications = false
stream_quality = "low"
warm = false

[mpv_options]
audio-device = "alsa/default"

[keys]
quit = "q"
""",
    )
    assert load_config(tmp_path) == Config(
        server="https://music.example.org",
        device_name="kitchen",
        mpv_options={"audio-device": "alsa/default"},
        keys={"quit": "q"},
        theme="nord",
        ca_file="/etc/ssl/my-ca.pem",
        notifications=False,
        stream_quality="low",
        warm=False,
    )


def test_unknown_top_level_keys_are_ignored(tmp_path: Path) -> None:
    write_config(tmp_path, 'server = "s"\nfuture_option = [1, 2]\n[future_table]\nx = 1\n')
    assert load_config(tmp_path) == Config(server="s")


def test_mpv_options_become_strings(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        "[mpv_options]\n"
        'ao = "pulse"\nvolume-max = 150\ncache-secs = 2.5\ngapless-audio = true\nvideo = false\n',
    )
    assert load_config(tmp_path).mpv_options == {
        "ao": "pulse",
        "volume-max": "150",
        "cache-secs": "2.5",
        "gapless-audio": "yes",
        "video": "no",
    }


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'server = "s"\n\ntheme nord\n')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = one_line(info.value)
    assert message.startswith(f"{path} line 3: ")
    assert "expected '='" in message
    assert "column" not in message


def test_error_at_end_of_document_names_last_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'server = "s"\ntheme = "unterminated')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert one_line(info.value).startswith(f"{path} line 2: unterminated string")


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b'server = "s"\ntheme = "\xff"\n')
    with pytest.raises(ConfigError, match=r"line 2: not valid UTF-8: save the file as UTF-8"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    ("text", "key", "got"),
    [
        ("mpv_options = 3\n", "mpv_options", "an integer"),
        ("[mpv_options]\nao = [1]\n", "mpv_options.ao", "an array"),
        ("[mpv_options.ao]\nx = 1\n", "mpv_options.ao", "a table"),
        ('keys = "q"\n', "keys", "a string"),
        ("[keys]\nquit = 1\n", "keys.quit", "an integer"),
        ("server = 5\n", "server", "an integer"),
        ("device_name = true\n", "device_name", "a boolean"),
        ("theme = 1979-05-27\n", "theme", "a date/time"),
        ("ca_file = 1.5\n", "ca_file", "a float"),
        ('notifications = "yes"\n', "notifications", "a string"),
        ('warm = "no"\n', "warm", "a string"),
        ("stream_quality = 64\n", "stream_quality", "an integer"),
        ('stream_quality = "best"\n', "stream_quality", "'best'"),
    ],
)
def test_wrong_types_name_the_key(tmp_path: Path, text: str, key: str, got: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = one_line(info.value)
    assert message.startswith(f"{path}: {key} must be ")
    assert f"not {got}: fix that value" in message


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(ConfigError, match=r"cannot read .*config\.toml"):
        load_config(tmp_path)


# save_server


def test_save_server_creates_dir_and_file(tmp_path: Path) -> None:
    config_dir = tmp_path / "new" / "tunehand"
    save_server(config_dir, "https://a.example")
    assert mode_of(config_dir) == 0o700
    assert load_config(config_dir).server == "https://a.example"
    assert [p.name for p in config_dir.iterdir()] == ["config.toml"]


def test_save_server_replaces_only_the_server_line(tmp_path: Path) -> None:
    original = (
        "# my tunehand\n"
        'server = "https://old.example"\n'
        'theme = "nord"  # dark\n'
        "\n"
        "[mpv_options]\n"
        "volume-max = 150\n"
        "\n"
        "[profiles.work]\n"
        'server = "https://work.example"\n'
    )
    path = write_config(tmp_path, original)
    save_server(tmp_path, "https://new.example")
    assert path.read_text() == original.replace("old.example", "new.example")


def test_save_server_inserts_before_tables(tmp_path: Path) -> None:
    path = write_config(tmp_path, '# top\ntheme = "nord"\n\n# keys I like\n[keys]\nquit = "q"\n')
    save_server(tmp_path, "https://s.example")
    assert path.read_text() == (
        '# top\ntheme = "nord"\nserver = "https://s.example"\n\n# keys I like\n[keys]\nquit = "q"\n'
    )
    assert load_config(tmp_path).keys == {"quit": "q"}


def test_save_server_into_file_without_final_newline(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'theme = "nord"')
    save_server(tmp_path, "s")
    assert path.read_text() == 'theme = "nord"\nserver = "s"\n'


@pytest.mark.parametrize("server", ['https://x.example/a"b', "C:\\path", "https://é.example", "\t"])
def test_save_server_escapes(tmp_path: Path, server: str) -> None:
    save_server(tmp_path, server)
    assert load_config(tmp_path).server == server


def test_save_server_keeps_file_mode(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'theme = "nord"\n')
    path.chmod(0o640)
    save_server(tmp_path, "s")
    assert mode_of(path) == 0o640


def test_save_server_refuses_a_broken_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "theme nord\n")
    with pytest.raises(ConfigError, match=r"line 1: "):
        save_server(tmp_path, "s")
    assert path.read_text() == "theme nord\n"


def test_save_server_refuses_what_it_cannot_edit_safely(tmp_path: Path) -> None:
    # A multi-line array whose inner line starts with "[" looks like a table header.
    text = "matrix = [\n  [1, 2],\n]\n"
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        save_server(tmp_path, "s")
    assert 'set server = "s" by hand' in one_line(info.value)
    assert path.read_text() == text
    assert tomllib.loads(path.read_text()) == {"matrix": [[1, 2]]}


# device_id and device name


def test_no_device_id_before_login(tmp_path: Path) -> None:
    """The client never makes a device id: the server mints it at the first login."""
    config_dir = tmp_path / "cfg"
    assert stored_device_id(config_dir) is None
    with pytest.raises(AuthError, match="not logged in"):
        device_id(config_dir)
    assert not config_dir.exists()


def test_saved_device_id_is_kept_private(tmp_path: Path) -> None:
    config_dir = tmp_path / "cfg"
    minted = "d" + "ab" * 10
    assert save_device_id(config_dir, minted) == minted
    assert stored_device_id(config_dir) == device_id(config_dir) == minted
    assert mode_of(config_dir) == 0o700
    assert mode_of(config_dir / "device-id") == 0o600
    assert sorted(p.name for p in config_dir.iterdir()) == ["device-id"]


@pytest.mark.parametrize("bad", [None, "", 5, "d" + "x" * 20, "d" * 65, "d" + "ab" * 10 + "\n"])
def test_malformed_server_device_id_is_refused(tmp_path: Path, bad: object) -> None:
    with pytest.raises(UsageError, match="no valid device_id"):
        save_device_id(tmp_path, bad)
    assert stored_device_id(tmp_path) is None


def test_damaged_device_id(tmp_path: Path) -> None:
    (tmp_path / "device-id").write_text("hello\n")
    with pytest.raises(ConfigError, match="device-id is damaged: delete it"):
        device_id(tmp_path)


def test_default_device_name() -> None:
    assert default_device_name() == socket.gethostname()
