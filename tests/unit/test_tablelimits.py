"""Unit tests for shared.adapters.tablelimits (BR-11 keys, BR-12 sizes)."""

from __future__ import annotations

import random
import re

import pytest

from shared.adapters.tablelimits import (
    MAX_ENTITY_BYTES,
    MAX_KEY_CHARS,
    MAX_PROPERTIES,
    MAX_STRING_BYTES,
    entity_size,
    guard_entity,
    key_is_valid,
    key_order,
    string_fits,
    table_key,
    utf16_size,
)
from shared.errors import StorageLimitError

FORBIDDEN = "/\\#?"
CONTROL = [chr(c) for c in range(0x20)] + [chr(c) for c in range(0x7F, 0xA0)]
HASHED = re.compile(r"^~h[0-9a-f]{64}$")
# Characters that stress the escaping: every escaped one, the escape's own alphabet, and
# characters of every UTF-16 width.
ALPHABET = [*"/\\#?%+~|", *"~7CEFh2", *CONTROL, "a", "Z", "-", "é", "中", "😀", " "]


def _unescape(key: str) -> tuple[str, ...]:
    """Decode a key that was not hashed back into the parts it was built from."""
    return tuple(
        re.sub(r"~([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), part)
        for part in key.split("|")
    )


def _random_parts(rng: random.Random) -> tuple[str, ...]:
    """Return one to three parts of random text, the first never empty."""
    count = rng.randint(1, 3)
    parts = ["".join(rng.choices(ALPHABET, k=rng.randint(0, 12))) for _ in range(count)]
    parts[0] = parts[0] or rng.choice(ALPHABET)
    return tuple(parts)


def _entity(**properties: object) -> dict[str, object]:
    return {"PartitionKey": "tenant", "RowKey": "row", **properties}


@pytest.mark.parametrize(
    "raw",
    [
        "<CAF/ab#1?x@mail.customer.example>",
        "q/1+Zx==",
        "team#1@customer.example",
        "back\\slash",
        "abc\u0007def",
        "tab\there",
        "del\u007f",
        "c1\u0085\u009f",
        "percent%20plus+tilde~pipe|",
    ],
)
def test_table_key_escapes_forbidden_and_control_characters(raw):
    """Keys built from text with forbidden or control characters pass the service's rules."""
    # GIVEN text holding characters the Table service refuses in keys

    # WHEN it becomes a key
    key = table_key(raw)

    # THEN the key is valid, holds none of them, and decodes back to the text
    assert key_is_valid(key)
    assert not any(ch in FORBIDDEN or ch in CONTROL for ch in key)
    assert _unescape(key) == (raw,)


def test_table_key_is_deterministic():
    """The same parts always give the same key, so upserts and deletes find the row."""
    # GIVEN parts with characters that need escaping
    parts = ("tenant/1", "<id#1@x>", "~7C")

    # WHEN the key is built twice
    first, second = table_key(*parts), table_key(*parts)

    # THEN both are equal
    assert first == second


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("a|b",), ("a", "b")),
        (("~2F",), ("/",)),
        (("a|b",), ("a~7Cb",)),
        (("a", "b|c"), ("a|b", "c")),
        (("~7E",), ("~",)),
    ],
)
def test_table_key_keeps_different_inputs_apart(left, right):
    """Inputs that an escaping shortcut could confuse give different keys."""
    # GIVEN two different part tuples

    # WHEN each becomes a key
    keys = table_key(*left), table_key(*right)

    # THEN the keys differ
    assert keys[0] != keys[1]


def test_table_key_random_inputs_are_valid_and_injective():
    """Thousands of random part tuples give valid keys that decode back to their parts."""
    # GIVEN a seeded stream of random part tuples over an escaping-hostile alphabet
    rng = random.Random(20240611)  # noqa: S311 - reproducible test data, not secrets
    seen: dict[str, tuple[str, ...]] = {}

    for _ in range(5000):
        parts = _random_parts(rng)

        # WHEN each becomes a key
        key = table_key(*parts)

        # THEN it is valid, decodes back, and no other tuple gave the same key
        assert key_is_valid(key), parts
        assert _unescape(key) == parts
        assert seen.setdefault(key, parts) == parts


def test_table_key_long_input_becomes_hash():
    """An escaped key over the length cap becomes ``~h`` and 64 hex digits."""
    # GIVEN parts whose escaped form is longer than the cap
    long_part = "/" * 100

    # WHEN keys are built from it and from a slightly different one
    key = table_key("tenant", long_part)
    other = table_key("tenant", long_part + "x")

    # THEN both are hashes, valid, stable and distinct
    assert HASHED.match(key)
    assert key_is_valid(key)
    assert key == table_key("tenant", long_part)
    assert key != other


def test_table_key_at_length_cap_is_not_hashed():
    """An escaped key of exactly the cap stays readable; one more character hashes it."""
    # GIVEN text exactly at the cap and one character over it
    at_cap, over_cap = "a" * MAX_KEY_CHARS, "a" * (MAX_KEY_CHARS + 1)

    # WHEN each becomes a key
    kept, hashed = table_key(at_cap), table_key(over_cap)

    # THEN only the longer one is hashed
    assert kept == at_cap
    assert HASHED.match(hashed)


def test_table_key_of_astral_characters_stays_under_one_kib():
    """A key of the longest unhashed run of 4-byte characters is still within 1 KiB."""
    # GIVEN the most emoji a key keeps without hashing
    text = "😀" * MAX_KEY_CHARS

    # WHEN it becomes a key
    key = table_key(text)

    # THEN it is kept as is and valid
    assert key == text
    assert key_is_valid(key)


@pytest.mark.parametrize(
    "key",
    ["", "a/b", "a\\b", "a#b", "a?b", "a\x00b", "a\x1fb", "a\x7fb", "a\x9fb", "é" * 513],
)
def test_key_is_valid_rejects_what_the_service_refuses(key):
    """Empty keys, forbidden or control characters and keys over 1 KiB are invalid."""
    # GIVEN a key the live service refuses

    # WHEN it is checked
    valid = key_is_valid(key)

    # THEN it is invalid
    assert not valid


@pytest.mark.parametrize("key", ["a", "tenant|ab", "~2F", "a\xa0b", "é" * 512, "%+~|"])
def test_key_is_valid_accepts_allowed_keys(key):
    """Keys of allowed characters up to 1 KiB are valid."""
    # GIVEN a key the service accepts

    # WHEN it is checked
    valid = key_is_valid(key)

    # THEN it is valid
    assert valid


def test_utf16_size_counts_astral_characters_as_four_bytes():
    """An emoji counts 4 bytes, an ASCII or BMP character 2."""
    # GIVEN text of one ASCII, one BMP and one astral character
    text = "aé😀"

    # WHEN it is measured
    size = utf16_size(text)

    # THEN the emoji counts twice as much as the others
    assert size == 2 + 2 + 4


@pytest.mark.parametrize(
    ("text", "fits"),
    [
        ("a" * 32_000, True),
        ("a" * 32_768, False),
        ("😀" * 20_000, False),
        ("😀" * 16_000, True),
    ],
    ids=["32000-ascii", "32768-ascii", "20000-emoji", "16000-emoji"],
)
def test_string_fits_measures_utf16_bytes(text, fits):
    """The string limit is 64,000 UTF-16 bytes, not a character count (BR-12 a-c)."""
    # GIVEN a string near the property limit

    # WHEN it is checked
    result = string_fits(text)

    # THEN it fits only when its UTF-16 size is within the limit
    assert result is fits


def test_entity_size_follows_the_documented_formula():
    """Entity size is 4 + keys + per property 8 + name + value, in UTF-16 bytes."""
    # GIVEN an entity with a string, a binary and a number
    entity = {"PartitionKey": "pk", "RowKey": "r", "s": "abc", "b": b"12", "n": 7}

    # WHEN it is measured
    size = entity_size(entity)

    # THEN it matches the formula term by term
    keys = 4 + 2
    string = 8 + 2 + (6 + 4)
    binary = 8 + 2 + (2 + 4)
    number = 8 + 2 + 8
    assert size == 4 + keys + string + binary + number


@pytest.mark.parametrize("key_name", ["PartitionKey", "RowKey"])
def test_guard_entity_rejects_bad_key(key_name):
    """An entity with a forbidden character in a key is refused, naming table and key."""
    # GIVEN an entity whose key holds a slash
    entity = _entity(**{key_name: "a/b"})

    # WHEN it is guarded
    with pytest.raises(StorageLimitError) as caught:
        guard_entity("emails", entity)

    # THEN the error names the table and the key
    assert caught.value.field == f"emails.{key_name}"


def test_guard_entity_rejects_missing_key():
    """An entity without a RowKey is refused."""
    # GIVEN an entity without a row key
    entity = {"PartitionKey": "tenant", "x": 1}

    # WHEN it is guarded
    with pytest.raises(StorageLimitError) as caught:
        guard_entity("emails", entity)

    # THEN the error names the row key
    assert caught.value.field == "emails.RowKey"


def test_guard_entity_rejects_too_many_properties():
    """An entity with more custom properties than the service allows is refused."""
    # GIVEN one property more than the limit, and an entity exactly at it
    over = _entity(**{f"p{i}": i for i in range(MAX_PROPERTIES + 1)})
    at_limit = _entity(**{f"p{i}": i for i in range(MAX_PROPERTIES)})

    # WHEN both are guarded
    guard_entity("emails", at_limit)
    with pytest.raises(StorageLimitError) as caught:
        guard_entity("emails", over)

    # THEN only the larger is refused, naming the table
    assert caught.value.field == "emails"
    assert str(MAX_PROPERTIES) in caught.value.rule


@pytest.mark.parametrize(
    "value",
    ["a" * 32_768, "😀" * 20_000, b"x" * (MAX_STRING_BYTES + 1)],
    ids=["ascii", "emoji", "binary"],
)
def test_guard_entity_rejects_oversize_property(value):
    """A string or binary property over the limit is refused, naming table and property."""
    # GIVEN an entity with one oversize property
    entity = _entity(body=value)

    # WHEN it is guarded
    with pytest.raises(StorageLimitError) as caught:
        guard_entity("emails", entity)

    # THEN the error names the table and the property
    assert caught.value.field == "emails.body"


def test_guard_entity_accepts_string_at_the_limit():
    """A 32,000-character ASCII body is accepted verbatim (BR-12 a)."""
    # GIVEN an entity with a body of exactly 64,000 UTF-16 bytes
    entity = _entity(body="a" * 32_000)

    # WHEN it is guarded
    guard_entity("emails", entity)

    # THEN nothing is raised and the body is untouched
    assert len(entity["body"]) == 32_000


def test_guard_entity_rejects_oversize_entity():
    """Forty 30,000-character properties each fit but together exceed 1 MiB (BR-12 d)."""
    # GIVEN forty properties that each fit
    entity = _entity(**{f"part{i}": "a" * 30_000 for i in range(40)})
    assert all(string_fits(value) for name, value in entity.items() if name.startswith("part"))

    # WHEN the entity is guarded
    with pytest.raises(StorageLimitError) as caught:
        guard_entity("emails", entity)

    # THEN it is refused for its total size, naming the table
    assert entity_size(entity) > MAX_ENTITY_BYTES
    assert caught.value.field == "emails"
    assert str(MAX_ENTITY_BYTES) in caught.value.rule


def test_key_order_sorts_by_utf16_code_unit_as_the_service_does():
    """A character past U+FFFF sorts before U+FF21 by UTF-16 code unit, after it by code point."""
    # GIVEN a full-width letter and an emoji, whose surrogates start at U+D83D
    wide, emoji = "\uff21", "\U0001f600"

    # WHEN / THEN
    assert sorted([wide, emoji]) == [wide, emoji]
    assert sorted([wide, emoji], key=key_order) == [emoji, wide]
