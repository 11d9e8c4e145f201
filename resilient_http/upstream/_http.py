"""A small incremental HTTP/1.1 request parser and response builders.

Just enough HTTP for a test and benchmark upstream: request line, headers, bodies framed by
Content-Length or chunked transfer coding (trailers skipped), `Expect: 100-continue`. No
pipelining guarantees beyond answering requests in order. Anything malformed raises
`HttpParseError` with the status to answer before closing.
"""

from __future__ import annotations

import email.utils
import http
from dataclasses import dataclass

__all__ = ["HttpParseError", "Request", "RequestParser", "http_url", "response_head"]

MAX_HEAD_BYTES = 64 * 1024
"""Request line plus headers; beyond this the request is refused with 431."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""A test upstream keeps bodies in memory; refuse anything absurd with 413."""
_MAX_CHUNK_LINE = 4096

_REASONS = {status.value: status.phrase.encode() for status in http.HTTPStatus}


def http_url(host: str, port: int, path: str | None = None) -> str:
    """`http://HOST:PORT` (IPv6 hosts in brackets), then `path` if given (a leading `/` added)."""
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    if path is None:
        return base
    return base + (path if path.startswith("/") else "/" + path)


class HttpParseError(Exception):
    """The request cannot be parsed; answer `status` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Request:
    """One complete request as the server saw it (header names lower-cased)."""

    method: str
    target: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


def response_head(status: int, content_length: int, extra: bytes = b"") -> bytes:
    """Status line and headers; `extra` is pre-formatted `Name: value\\r\\n` lines.

    Deliberately no `Connection` header: clients must treat every connection as reusable.
    """
    reason = _REASONS.get(status, b"Unknown")
    return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (
        status,
        reason,
        content_length,
        extra,
    )


def http_date(timestamp: float) -> str:
    """IMF-fixdate, the only HTTP-date form servers should send."""
    return email.utils.formatdate(timestamp, usegmt=True)


class RequestParser:
    """Feed bytes with `feed`; take complete requests with `next_request` until it gives None."""

    __slots__ = ("_body", "_buffer", "_chunk_left", "_head", "_length", "_scan", "continue_needed")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scan = 0  # where to resume looking for the end of the head
        self._head: tuple[str, str, dict[str, str], bool] | None = None
        self._length = -1  # body bytes still expected; -1 while reading chunked framing
        self._chunk_left = -1  # chunked: bytes left in the current chunk, -1 before a size line
        self._body = bytearray()
        self.continue_needed = False
        """True once a head with `Expect: 100-continue` was read and its body is still due."""

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buffer += data

    @property
    def is_idle(self) -> bool:
        """True between requests: nothing partial is buffered."""
        return self._head is None and not self._buffer

    def next_request(self) -> Request | None:
        """The next complete request, or None until more bytes arrive."""
        if self._head is None and not self._read_head():
            return None
        if self._length >= 0:
            if len(self._buffer) < self._length:
                return None
            body = bytes(self._buffer[: self._length])
            del self._buffer[: self._length]
        else:
            if not self._read_chunks():
                return None
            body, self._body = bytes(self._body), bytearray()
        assert self._head is not None
        method, target, headers, keep_alive = self._head
        self._head, self.continue_needed = None, False
        path = _path_of(target)
        return Request(method, target, path, headers, body, keep_alive)

    def _read_head(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n", max(0, self._scan - 3))
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise HttpParseError(431, "request head too large")
            self._scan = len(buffer)
            return False
        if end > MAX_HEAD_BYTES:
            raise HttpParseError(431, "request head too large")
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        del buffer[: end + 4]
        self._scan = 0
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpParseError(400, f"bad request line {lines[0]!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HttpParseError(400, f"bad header line {line!r}")
            key, value = name.lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (
            version == "HTTP/1.1" or "keep-alive" in connection
        )
        self._head = (method, target, headers, keep_alive)
        self._length, self._chunk_left = self._body_length(headers), -1
        self.continue_needed = (
            headers.get("expect", "").lower() == "100-continue" and self._length != 0
        )
        return True

    @staticmethod
    def _body_length(headers: dict[str, str]) -> int:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return -1
        text = headers.get("content-length")
        if text is None:
            return 0
        if not (text.isascii() and text.isdigit()):
            raise HttpParseError(400, f"bad Content-Length {text!r}")
        length = int(text)
        if length > MAX_BODY_BYTES:
            raise HttpParseError(413, "body too large")
        return length

    def _read_chunks(self) -> bool:
        """Consume chunked framing; True once the last chunk and trailers are in."""
        buffer = self._buffer
        while True:
            if self._chunk_left < 0:  # expecting a size line, or trailers after the last chunk
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > _MAX_CHUNK_LINE:
                        raise HttpParseError(400, "chunk size line too long")
                    return False
                line = bytes(buffer[:end])
                del buffer[: end + 2]
                if self._chunk_left == -2:  # trailer section: an empty line ends the message
                    if not line:
                        return True
                    continue
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise HttpParseError(400, f"bad chunk size {line[:40]!r}") from None
                if size < 0 or len(self._body) + size > MAX_BODY_BYTES:
                    raise HttpParseError(413, "body too large")
                self._chunk_left = size if size else -2
            else:
                if len(buffer) < self._chunk_left + 2:
                    return False
                if buffer[self._chunk_left : self._chunk_left + 2] != b"\r\n":
                    raise HttpParseError(400, "chunk data not followed by CRLF")
                self._body += buffer[: self._chunk_left]
                del buffer[: self._chunk_left + 2]
                self._chunk_left = -1


def _path_of(target: str) -> str:
    """The path of an origin-form or absolute-form target, without the query."""
    if target.startswith(("http://", "https://")):
        slash = target.find("/", target.find("//") + 2)
        target = target[slash:] if slash >= 0 else "/"
    return target.split("?", 1)[0].split("#", 1)[0]
