"""Unit tests for the queue poller's message decoding rule (BR-14)."""

import base64
import binascii

import pytest

from devstack.host.queues import decode_body


def test_queues_decode_body_base64_round_trips_id_like_text():
    """A base64-encoded id such as 'abcd' decodes back to exactly 'abcd'."""
    # GIVEN the text a TextBase64EncodePolicy producer sends for 'abcd'
    content = base64.b64encode(b"abcd").decode("ascii")

    # WHEN it is decoded with the default encoding
    body = decode_body(content, "base64")

    # THEN the function gets the original bytes
    assert body == b"abcd"


def test_queues_decode_body_rejects_text_that_is_not_base64():
    """Plain JSON sent without an encode policy is not valid base64 and fails to decode."""
    # GIVEN JSON sent as plain text
    content = '{"user_id": "u-1"}'

    # WHEN / THEN decoding fails, which the poller counts as a failed attempt
    with pytest.raises(binascii.Error):
        decode_body(content, "base64")


def test_queues_decode_body_none_encoding_passes_text_through():
    """With messageEncoding none the text arrives as its UTF-8 bytes."""
    # GIVEN / WHEN / THEN
    assert decode_body("abcd", "none") == b"abcd"
