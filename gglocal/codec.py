"""aws-c-event-stream framing: encode and decode event-stream messages with all header types.

Wire format (big-endian)::

    total_len u32 | headers_len u32 | prelude_crc u32 | headers | payload | message_crc u32

``prelude_crc`` is the CRC-32 of the first 8 bytes, ``message_crc`` the CRC-32 of everything before it;
``total_len = 16 + headers_len + len(payload)``. A header is ``name_len u8 | name | type u8 | value`` with the
value encoded per :class:`HeaderType` (bools carry no value; bytes and strings have a u16 length prefix;
timestamps are int64 milliseconds since the epoch; UUIDs are 16 raw bytes).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from enum import IntEnum

from gglocal.errors import FramingError

PRELUDE_LEN = 12
MIN_MESSAGE_LEN = 16
MAX_MESSAGE_LEN = 24 * 1024 * 1024
MAX_HEADERS_LEN = 128 * 1024
MAX_HEADER_NAME_LEN = 127
MAX_HEADER_VALUE_LEN = 32767

HeaderValue = bool | int | bytes | str | uuid.UUID


class HeaderType(IntEnum):
    """Header value types, as numbered on the wire."""

    BOOL_TRUE = 0
    BOOL_FALSE = 1
    BYTE = 2
    INT16 = 3
    INT32 = 4
    INT64 = 5
    BYTE_BUF = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9


_INT_FORMATS = {
    HeaderType.BYTE: ">b",
    HeaderType.INT16: ">h",
    HeaderType.INT32: ">i",
    HeaderType.INT64: ">q",
    HeaderType.TIMESTAMP: ">q",
}


@dataclass(frozen=True)
class Header:
    """One typed header. Build with the class methods so the value matches the type."""

    name: str
    type: HeaderType
    value: HeaderValue

    @classmethod
    def boolean(cls, name: str, value: bool) -> Header:
        return cls(name, HeaderType.BOOL_TRUE if value else HeaderType.BOOL_FALSE, value)

    @classmethod
    def byte(cls, name: str, value: int) -> Header:
        return cls(name, HeaderType.BYTE, value)

    @classmethod
    def int16(cls, name: str, value: int) -> Header:
        return cls(name, HeaderType.INT16, value)

    @classmethod
    def int32(cls, name: str, value: int) -> Header:
        return cls(name, HeaderType.INT32, value)

    @classmethod
    def int64(cls, name: str, value: int) -> Header:
        return cls(name, HeaderType.INT64, value)

    @classmethod
    def buffer(cls, name: str, value: bytes) -> Header:
        return cls(name, HeaderType.BYTE_BUF, bytes(value))

    @classmethod
    def string(cls, name: str, value: str) -> Header:
        return cls(name, HeaderType.STRING, value)

    @classmethod
    def timestamp(cls, name: str, millis: int) -> Header:
        return cls(name, HeaderType.TIMESTAMP, millis)

    @classmethod
    def uuid(cls, name: str, value: uuid.UUID) -> Header:
        return cls(name, HeaderType.UUID, value)


@dataclass(frozen=True)
class EventMessage:
    """One decoded event-stream message: ordered headers and a payload."""

    headers: tuple[Header, ...]
    payload: bytes = b""

    def get(self, name: str) -> HeaderValue | None:
        """Value of the first header called ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        for header in self.headers:
            if header.name.lower() == lowered:
                return header.value
        return None


def _encode_header(header: Header) -> bytes:
    name = header.name.encode("utf-8")
    if not 0 < len(name) <= MAX_HEADER_NAME_LEN:
        raise FramingError(f"header name {header.name!r} must be 1..{MAX_HEADER_NAME_LEN} bytes")
    head = struct.pack(">B", len(name)) + name + struct.pack(">B", int(header.type))
    kind, value = header.type, header.value
    if kind in (HeaderType.BOOL_TRUE, HeaderType.BOOL_FALSE):
        return head
    if kind in _INT_FORMATS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise FramingError(f"header {header.name!r} of type {kind.name} needs an int")
        try:
            return head + struct.pack(_INT_FORMATS[kind], value)
        except struct.error as exc:
            raise FramingError(f"header {header.name!r}: {value} out of range for {kind.name}") from exc
    if kind == HeaderType.UUID:
        if not isinstance(value, uuid.UUID):
            raise FramingError(f"header {header.name!r} of type UUID needs a uuid.UUID")
        return head + value.bytes
    if kind == HeaderType.STRING:
        raw = str(value).encode("utf-8")
    elif isinstance(value, bytes | bytearray):
        raw = bytes(value)
    else:
        raise FramingError(f"header {header.name!r} of type BYTE_BUF needs bytes")
    if len(raw) > MAX_HEADER_VALUE_LEN:
        raise FramingError(f"header {header.name!r} value is {len(raw)} bytes (max {MAX_HEADER_VALUE_LEN})")
    return head + struct.pack(">H", len(raw)) + raw


def encode_message(message: EventMessage) -> bytes:
    """Serialize a message with both CRCs."""
    headers = b"".join(_encode_header(h) for h in message.headers)
    if len(headers) > MAX_HEADERS_LEN:
        raise FramingError(f"headers are {len(headers)} bytes (max {MAX_HEADERS_LEN})")
    total = MIN_MESSAGE_LEN + len(headers) + len(message.payload)
    if total > MAX_MESSAGE_LEN:
        raise FramingError(f"message is {total} bytes (max {MAX_MESSAGE_LEN})")
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + message.payload
    return body + struct.pack(">I", zlib.crc32(body))


def _decode_headers(raw: bytes) -> tuple[Header, ...]:
    headers: list[Header] = []
    pos = 0
    try:
        while pos < len(raw):
            name_len = raw[pos]
            if not 0 < name_len <= MAX_HEADER_NAME_LEN or pos + 1 + name_len > len(raw):
                raise FramingError(f"header name length {name_len} at {pos}: not 1..{MAX_HEADER_NAME_LEN}")
            name = raw[pos + 1 : pos + 1 + name_len].decode("utf-8")
            pos += 1 + name_len
            kind = HeaderType(raw[pos])
            pos += 1
            value: HeaderValue
            if kind in (HeaderType.BOOL_TRUE, HeaderType.BOOL_FALSE):
                value = kind == HeaderType.BOOL_TRUE
            elif kind in _INT_FORMATS:
                fmt = _INT_FORMATS[kind]
                (value,) = struct.unpack_from(fmt, raw, pos)
                pos += struct.calcsize(fmt)
            elif kind == HeaderType.UUID:
                if pos + 16 > len(raw):
                    raise FramingError("truncated UUID header")
                value = uuid.UUID(bytes=raw[pos : pos + 16])
                pos += 16
            else:
                (length,) = struct.unpack_from(">H", raw, pos)
                pos += 2
                if pos + length > len(raw):
                    raise FramingError(f"header {name!r} value runs past the headers block")
                chunk = raw[pos : pos + length]
                value = chunk.decode("utf-8") if kind == HeaderType.STRING else bytes(chunk)
                pos += length
            if pos > len(raw):
                raise FramingError(f"header {name!r} runs past the headers block")
            headers.append(Header(name, kind, value))
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise FramingError(f"malformed headers block: {exc}") from exc
    except ValueError as exc:  # unknown HeaderType
        raise FramingError(f"unknown header type: {exc}") from exc
    return tuple(headers)


def _check_prelude(prelude: bytes, limit: int = MAX_MESSAGE_LEN) -> tuple[int, int]:
    total, headers_len, crc = struct.unpack(">III", prelude)
    if zlib.crc32(prelude[:8]) != crc:
        raise FramingError("prelude CRC mismatch")
    if not MIN_MESSAGE_LEN <= total <= limit:
        raise FramingError(f"message length {total} outside {MIN_MESSAGE_LEN}..{limit}")
    if headers_len > min(MAX_HEADERS_LEN, total - MIN_MESSAGE_LEN):
        raise FramingError(f"headers length {headers_len} too large for message length {total}")
    return total, headers_len


def decode_message(data: bytes) -> EventMessage:
    """Decode exactly one complete message; raises FramingError on any inconsistency."""
    if len(data) < MIN_MESSAGE_LEN:
        raise FramingError(f"message is {len(data)} bytes, shorter than {MIN_MESSAGE_LEN}")
    total, headers_len = _check_prelude(bytes(data[:PRELUDE_LEN]))
    if total != len(data):
        raise FramingError(f"prelude says {total} bytes, got {len(data)}")
    (crc,) = struct.unpack(">I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise FramingError("message CRC mismatch")
    headers = _decode_headers(bytes(data[PRELUDE_LEN : PRELUDE_LEN + headers_len]))
    return EventMessage(headers, bytes(data[PRELUDE_LEN + headers_len : -4]))


class MessageDecoder:
    """Incremental decoder: feed bytes as they arrive, get complete messages back.

    ``limit`` bounds one message (and so what the decoder buffers): a prelude announcing more raises
    FramingError as soon as its 12 bytes are in, before any of the body is held. It may be raised later,
    e.g. once a connection is authenticated, up to the protocol's ``MAX_MESSAGE_LEN``.
    """

    def __init__(self, limit: int = MAX_MESSAGE_LEN) -> None:
        if not MIN_MESSAGE_LEN <= limit <= MAX_MESSAGE_LEN:
            raise ValueError(f"message limit must be within {MIN_MESSAGE_LEN}..{MAX_MESSAGE_LEN}")
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[EventMessage]:
        self._buffer += data
        messages: list[EventMessage] = []
        while len(self._buffer) >= PRELUDE_LEN:
            total, _ = _check_prelude(bytes(self._buffer[:PRELUDE_LEN]), self.limit)
            if len(self._buffer) < total:
                break
            messages.append(decode_message(bytes(self._buffer[:total])))
            del self._buffer[:total]
        return messages

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buffer)
