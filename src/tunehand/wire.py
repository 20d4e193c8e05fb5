"""JSON encoding and validated decoding of channel messages and API bodies (msgspec).

Shared by the client and the server. Everything the peer sends goes through
`decode_*`, which turn any malformed input into one `ProtocolError` line naming the
field ("volume: Expected `int`, got `str` - at `$.command.value`").
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from tunehand.core.protocol import CLIENT_TYPES, SERVER_TYPES, ClientMessage, ServerMessage
from tunehand.errors import ProtocolError

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(obj: object) -> bytes:
    return _encoder.encode(obj)


def to_builtins(obj: object) -> Any:
    return msgspec.to_builtins(obj)


def _parse(data: bytes | str) -> dict[str, Any]:
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from exc
    except RecursionError:
        raise ProtocolError("malformed JSON: nested too deeply") from None
    except UnicodeDecodeError:
        raise ProtocolError("malformed JSON: invalid UTF-8") from None
    if not isinstance(obj, dict):
        raise ProtocolError("a message must be a JSON object")
    return obj


def convert(obj: Any, type_: type[T]) -> T:
    """Validate already-parsed JSON against a dataclass type."""
    try:
        return msgspec.convert(obj, type=type_)
    except msgspec.ValidationError as exc:
        raise ProtocolError(str(exc)) from exc


def decode(data: bytes | str, type_: type[T]) -> T:
    return convert(_parse(data), type_)


def _by_type(data: bytes | str, types: dict[str, type[Any]]) -> Any:
    obj = _parse(data)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("type: every message needs a string `type`")
    cls = types.get(kind)
    if cls is None:
        raise ProtocolError(f"type: unknown message type {kind[:40]!r}")
    return convert(obj, cls)


def decode_client(data: bytes | str) -> ClientMessage:
    msg: ClientMessage = _by_type(data, CLIENT_TYPES)
    return msg


def decode_server(data: bytes | str) -> ServerMessage:
    msg: ServerMessage = _by_type(data, SERVER_TYPES)
    return msg
