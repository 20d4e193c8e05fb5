"""A minimal HTTP/1.1 client connection (keep-alive, Content-Length or chunked bodies).

`http.client` drags in the email package and ssl (about 15 ms of imports), which the
`ctl` start-up budget cannot afford; this speaks just what the tunehand server
answers. TLS (and so `ssl`) is imported only for https servers.
"""

from __future__ import annotations

import socket
from typing import Any

MAX_HEADER_LINE = 16 * 1024
MAX_BODY = 64 * 1024 * 1024


class MalformedResponse(ValueError):
    pass


class Http11:
    def __init__(self, host: str, port: int, timeout_s: float, ssl_context: Any = None) -> None:
        self.host, self.port, self.timeout_s, self.ssl_context = host, port, timeout_s, ssl_context
        self._sock: socket.socket | None = None
        self._file: Any = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> None:
        # An ASCII host goes to getaddrinfo as bytes: a str would be encoded with the
        # "idna" codec, whose import (stringprep, unicodedata) costs `ctl` ~1.5 ms.
        host: str | bytes = self.host.encode("ascii") if self.host.isascii() else self.host
        address: Any = (host, self.port)
        sock = socket.create_connection(address, timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        self._sock = sock
        self._file = sock.makefile("rb")

    def exchange(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, bytes]:
        """Send one request and read its response. Raises OSError or MalformedResponse."""
        if self._sock is None:
            self._connect()
        assert self._sock is not None
        host = self.host if ":" not in self.host else f"[{self.host}]"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body) if body else 0}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._sock.sendall(head + (body or b""))
        return self._read_response(method)

    def _line(self) -> bytes:
        line: bytes = self._file.readline(MAX_HEADER_LINE + 1)
        if not line:
            raise ConnectionResetError("the server closed the connection")
        if len(line) > MAX_HEADER_LINE:
            raise MalformedResponse("header line too long")
        return line

    def _read_response(self, method: str) -> tuple[int, bytes]:
        status_line = self._line().decode("latin-1").split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise MalformedResponse("not an HTTP/1.x response")
        try:
            status = int(status_line[1])
        except ValueError:
            raise MalformedResponse("bad status code") from None
        length: int | None = None
        chunked = False
        close = False
        while True:
            line = self._line()
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            key, value = name.strip().lower(), value.strip()
            if key == "content-length":
                if not value.isdigit() or int(value) > MAX_BODY:
                    raise MalformedResponse("bad Content-Length")
                length = int(value)
            elif key == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif key == "connection" and value.lower() == "close":
                close = True
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            data = b""
        elif chunked:
            data = self._chunked()
        elif length is not None:
            data = self._exact(length)
        else:
            data = self._file.read(MAX_BODY)
            close = True
        if close:
            self.close()
        return status, data

    def _exact(self, n: int) -> bytes:
        data: bytes = self._file.read(n)
        if len(data) != n:
            raise ConnectionResetError("the server closed the connection mid-body")
        return data

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise MalformedResponse("bad chunk size") from None
            if size == 0:
                while self._line() not in (b"\r\n", b"\n"):
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise MalformedResponse("body too large")
            parts.append(self._exact(size))
            self._line()
