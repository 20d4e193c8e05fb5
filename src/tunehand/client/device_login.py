"""The client half of the device-code login (RFC 8628), shared by `tunehand login
--device-code` and the TUI's login screen.

`start` asks the server for a code; `poll` asks once whether it was approved. The
caller waits `interval_s` between polls (blocking or async, as it likes) and shows
`user_code` and `verification_uri` to the user. Errors are `AuthError` (denied,
expired, unknown code), `ServerUnreachable` (5xx) or `UsageError` (anything else),
each with one line for the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

from tunehand.client.http import HttpClient, error_message
from tunehand.errors import AuthError, ServerUnreachable, UsageError

SLOW_DOWN_STEP_S = 5.0
"""RFC 8628 §3.5: on `slow_down` the interval grows by 5 s."""


@dataclass(frozen=True, slots=True)
class DeviceCode:
    user_code: str
    verification_uri: str
    expires_in_s: int
    interval_s: float
    device_code: str = field(repr=False)
    """The polling secret: held in memory only, never shown or logged."""


@dataclass(frozen=True, slots=True)
class Poll:
    """One poll's answer: the token payload once approved, else the interval to wait."""

    tokens: dict[str, Any] | None
    interval_s: float


def raise_login_error(status: int, payload: Any) -> NoReturn:
    _, message = error_message(payload, f"login failed ({status})")
    if status in (401, 429):
        raise AuthError(message)
    if status >= 500:
        raise ServerUnreachable(message)
    raise UsageError(message)


def start(
    http: HttpClient, device_id: str | None, device_name: str, *, default: bool = False
) -> DeviceCode:
    """Ask for a code; with no `device_id` (a first login) the server mints the id and
    the token answer carries it. `default`: the name is made up (the host's), so the
    server may make it unique (`HOST-2`)."""
    ask: dict[str, object] = {"device_name": device_name}
    if default:
        ask["device_name_default"] = True
    if device_id:
        ask["device_id"] = device_id
    status, answer = http.request("POST", "/v1/auth/device", ask)
    if status != 200 or not isinstance(answer, dict):
        raise_login_error(status, answer)
    try:
        return DeviceCode(
            user_code=str(answer["user_code"]),
            verification_uri=str(answer["verification_uri"]),
            expires_in_s=int(answer["expires_in"]),
            interval_s=float(answer["interval"]),
            device_code=str(answer["device_code"]),
        )
    except (KeyError, TypeError, ValueError):
        raise UsageError("the server's device-code answer is malformed") from None


def poll(http: HttpClient, code: DeviceCode, interval_s: float) -> Poll:
    status, payload = http.request(
        "POST", "/v1/auth/device/token", {"device_code": code.device_code}
    )
    if status == 200 and isinstance(payload, dict):
        return Poll(dict(payload), interval_s)
    err_code, message = error_message(payload, f"login failed ({status})")
    if err_code == "authorization_pending":
        return Poll(None, interval_s)
    if err_code == "slow_down":
        err = payload.get("error", {}) if isinstance(payload, dict) else {}
        asked = err.get("interval") if isinstance(err, dict) else None
        floor = float(asked) if isinstance(asked, int | float) else 0.0
        return Poll(None, max(interval_s + SLOW_DOWN_STEP_S, floor))
    if err_code == "expired_token":
        raise AuthError("the code expired before it was approved: start the login again")
    if err_code == "access_denied":
        raise AuthError(f"the login was denied: {message}")
    if status == 400:  # invalid_grant: unknown or already used code
        raise AuthError(message)
    raise_login_error(status, payload)


def instructions(code: DeviceCode) -> str:
    return (
        f"On a logged-in device run `tunehand ctl approve {code.user_code}`, "
        f"or open {code.verification_uri} and enter the code."
    )
