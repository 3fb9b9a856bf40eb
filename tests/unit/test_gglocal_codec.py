"""Event-stream framing and RPC message mapping (no sockets)."""

from __future__ import annotations

import struct
import uuid
import zlib

import pytest

from gglocal.codec import EventMessage, Header, HeaderType, MessageDecoder, decode_message, encode_message
from gglocal.errors import FramingError
from gglocal.rpc import TERMINATE_STREAM, MessageType, RpcMessage, error_message, json_message

ALL_HEADERS = (
    Header.boolean("t", True),
    Header.boolean("f", False),
    Header.byte("b", -7),
    Header.int16("s", -12345),
    Header.int32("i", 2**31 - 1),
    Header.int64("l", -(2**63)),
    Header.buffer("buf", b"\x00\xffraw"),
    Header.string("str", "héllo"),
    Header.timestamp("ts", 1_700_000_000_123),
    Header.uuid("id", uuid.UUID("12345678-1234-5678-1234-567812345678")),
)


def test_round_trip_keeps_every_header_type_and_payload() -> None:
    frame = EventMessage(ALL_HEADERS, b'{"x": 1}')
    decoded = decode_message(encode_message(frame))
    assert decoded == frame
    assert {h.type for h in decoded.headers} == set(HeaderType)


def test_empty_frame_is_sixteen_bytes() -> None:
    data = encode_message(EventMessage(()))
    assert len(data) == 16
    assert decode_message(data) == EventMessage((), b"")


def test_wire_layout_matches_the_spec() -> None:
    data = encode_message(EventMessage((Header.string("a", "b"),), b"P"))
    total, headers_len, prelude_crc = struct.unpack(">III", data[:12])
    assert total == len(data) == 16 + headers_len + 1
    assert prelude_crc == zlib.crc32(data[:8])
    assert data[12:][:headers_len] == b"\x01a\x07\x00\x01b"
    assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])


def test_prelude_crc_mismatch_is_rejected() -> None:
    data = bytearray(encode_message(EventMessage((Header.string("a", "b"),), b"x")))
    data[8] ^= 0xFF
    with pytest.raises(FramingError, match="prelude CRC"):
        decode_message(bytes(data))


def test_message_crc_mismatch_is_rejected() -> None:
    data = bytearray(encode_message(EventMessage((Header.string("a", "b"),), b"payload")))
    data[-6] ^= 0x01
    with pytest.raises(FramingError, match="message CRC"):
        decode_message(bytes(data))


def test_unknown_header_type_is_rejected() -> None:
    headers = b"\x01a\x0a"
    prelude = struct.pack(">II", 16 + len(headers), len(headers))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers
    with pytest.raises(FramingError, match="unknown header type"):
        decode_message(body + struct.pack(">I", zlib.crc32(body)))


def test_impossible_lengths_are_rejected_before_buffering() -> None:
    prelude = struct.pack(">II", 2**31, 0)
    with pytest.raises(FramingError, match="outside"):
        MessageDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


def test_decoder_reassembles_frames_split_anywhere() -> None:
    frames = [EventMessage(ALL_HEADERS, b"one"), EventMessage((Header.int32("n", 2),), b"two" * 1000)]
    data = b"".join(encode_message(f) for f in frames)
    decoder = MessageDecoder()
    out: list[EventMessage] = []
    for start in range(0, len(data), 7):
        out += decoder.feed(data[start : start + 7])
    assert out == frames
    assert decoder.pending == 0


@pytest.mark.parametrize(
    "header",
    [
        Header.byte("b", 200),
        Header.int16("s", 2**15),
        Header.string("x" * 128, "v"),
        Header.string("s", "v" * 40000),
    ],
)
def test_values_that_do_not_fit_are_refused_on_encode(header: Header) -> None:
    with pytest.raises(FramingError):
        encode_message(EventMessage((header,)))


def test_rpc_message_lifts_protocol_headers() -> None:
    message = json_message(3, "aws.greengrass#XResponse", {"a": 1}, terminate=True)
    again = RpcMessage.from_event_message(decode_message(encode_message(message.to_event_message())))
    assert again == message
    assert again.terminates
    assert again.get("service-model-type") == "aws.greengrass#XResponse"


def test_rpc_message_without_protocol_headers_is_a_framing_error() -> None:
    with pytest.raises(FramingError, match="protocol headers"):
        RpcMessage.from_event_message(EventMessage((Header.int32(":message-type", 0),)))


def test_error_message_carries_the_modeled_error_shape() -> None:
    message = error_message(5, "UnauthorizedError", "nope")
    assert message.message_type == MessageType.APPLICATION_ERROR
    assert message.flags == TERMINATE_STREAM
    assert message.get("service-model-type") == "aws.greengrass#UnauthorizedError"
    assert b'"_errorCode": "UnauthorizedError"' in message.payload


def test_a_decoder_limit_refuses_a_larger_prelude_before_any_of_its_body_arrives() -> None:
    decoder = MessageDecoder(limit=64 * 1024)
    prelude = struct.pack(">II", 24 * 1024 * 1024, 0)
    with pytest.raises(FramingError, match=r"outside 16\.\.65536"):
        decoder.feed(prelude + struct.pack(">I", zlib.crc32(prelude)))
    small = encode_message(EventMessage((Header.string("a", "b"),), b"x" * 1000))
    assert MessageDecoder(limit=64 * 1024).feed(small) == [decode_message(small)]
