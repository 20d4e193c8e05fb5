"""The `subsonic-response` envelope, in JSON (`f=json`) or XML (the default), and the
Subsonic error codes.

A payload is a tree of dicts: in XML a scalar value is an attribute, a dict a child
element, a list repeated child elements (a list of scalars: elements holding text), and
the key `value` the element's text. The XML is built with `xml.etree`. Errors are
answered with HTTP 200 and `status="failed"`, as every Subsonic server does (apps read
the code, not the status line).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

from starlette.responses import Response

from tunehand import __version__

API_VERSION = "1.16.1"
XMLNS = "http://subsonic.org/restapi"
SERVER_TYPE = "tunehand"

GENERIC = 0
MISSING = 10
CLIENT_TOO_OLD = 20
SERVER_TOO_OLD = 30
WRONG_CREDENTIALS = 40
TOKEN_NOT_SUPPORTED = 41
AUTH_NOT_SUPPORTED = 42
CONFLICTING_AUTH = 43
INVALID_API_KEY = 44
NOT_AUTHORIZED = 50
NOT_FOUND = 70

Payload = dict[str, Any]


class SubsonicError(Exception):
    """A request refused with a Subsonic error `code` (and, rarely, an HTTP status)."""

    def __init__(
        self,
        code: int,
        message: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.headers = code, message, status, headers
        self.fmt: str | None = None
        """The format to answer in, when known better than from the query string."""


def envelope(status: str) -> Payload:
    return {
        "status": status,
        "version": API_VERSION,
        "type": SERVER_TYPE,
        "serverVersion": __version__,
        "openSubsonic": True,
    }


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""Characters XML 1.0 cannot hold, even escaped (a tag may carry them): replaced by U+FFFD."""


def _xml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _fill(el: ET.Element, payload: Payload) -> None:
    for key, value in payload.items():
        if value is None:
            continue
        if key == "value":
            el.text = _xml_value(value)
        elif isinstance(value, dict):
            _fill(ET.SubElement(el, key), value)
        elif isinstance(value, list):
            for item in value:
                child = ET.SubElement(el, key)
                if isinstance(item, dict):
                    _fill(child, item)
                else:
                    child.text = _xml_value(item)
        else:
            el.set(key, _xml_value(value))


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def render(
    fmt: str,
    payload: Payload,
    status: str = "ok",
    http_status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {**envelope(status), **payload}
    if fmt == "json":
        data = json.dumps(
            {"subsonic-response": _strip_none(body)}, ensure_ascii=False, separators=(",", ":")
        )
        return Response(data, http_status, headers, media_type="application/json")
    root = ET.Element("subsonic-response", {"xmlns": XMLNS})
    _fill(root, body)
    data_xml = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(data_xml, http_status, headers, media_type="text/xml")


def error(fmt: str, exc: SubsonicError) -> Response:
    payload = {"error": {"code": exc.code, "message": exc.message}}
    return render(fmt, payload, "failed", exc.status, exc.headers)
