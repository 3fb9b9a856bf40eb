"""Bounded fuzz run (hypothesis, fixed example budget, derandomized for CI) over the event-stream codec
and the RPC mapping: whatever the bytes, decoding raises nothing but FramingError."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from gglocal.codec import EventMessage, MessageDecoder, decode_message, encode_message
from gglocal.errors import FramingError
from gglocal.rpc import RpcMessage
from tests.event_stream_strategies import encoded, event_messages, mutated, rpc_messages, wire_inputs

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None)


def decode_all(data: bytes, cuts: list[int]) -> list[RpcMessage]:
    """Feed ``data`` in pieces; the RPC messages, or FramingError (the only error allowed)."""
    decoder = MessageDecoder()
    messages = []
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        for frame in decoder.feed(data[start:cut]):
            messages.append(RpcMessage.from_event_message(frame))
        start = max(start, cut)
    return messages


@FUZZ
@given(event_messages)
def test_every_valid_frame_decodes_to_itself(message: EventMessage) -> None:
    assert decode_message(encode_message(message)) == message


@FUZZ
@given(wire_inputs(), st.lists(st.integers(0, 10_000), max_size=4))
def test_hostile_bytes_in_any_pieces_raise_only_framing_errors(data: bytes, cuts: list[int]) -> None:
    with contextlib.suppress(FramingError):
        decode_all(data, cuts)


@FUZZ
@given(rpc_messages().flatmap(lambda message: mutated(encoded(message))))
def test_a_mutated_rpc_frame_is_decoded_or_refused_with_a_framing_error(data: bytes) -> None:
    try:
        message = RpcMessage.from_event_message(decode_message(data))
    except FramingError:
        return
    assert encoded(message)  # what decodes can be encoded again
