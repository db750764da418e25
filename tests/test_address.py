"""Server address parsing: accepted forms normalise; bad ones raise UsageError with the input."""

from __future__ import annotations

import pytest

from timekit.address import parse_server
from timekit.errors import UsageError


@pytest.mark.parametrize(("text", "name"), [
    ("127.0.0.1", "127.0.0.1:123"),
    ("127.0.0.1:11123", "127.0.0.1:11123"),
    ("Time.Example.ORG", "time.example.org:123"),
    ("time.example.org.:5123", "time.example.org:5123"),
    ("::1", "[::1]:123"),
    ("[::1]:4123", "[::1]:4123"),
    ("[0:0::1]", "[::1]:123"),
    ("localhost:1", "localhost:1"),
])
def test_accepted(text: str, name: str) -> None:
    assert parse_server(text).name == name


@pytest.mark.parametrize(("text", "needle"), [
    ("127.0.0.1:0", "not in 1-65535"),
    ("127.0.0.1:65536", "not in 1-65535"),
    ("127.0.0.1:http", "not a number"),
    ("[::1", "malformed"),
    ("[nonsense]:1", "malformed IPv6"),
    (":123", "no host"),
    ("", "empty"),
    ("bad host:1", "malformed host"),
    ("-lead.example", "malformed host"),
    ("1.2.3", "malformed host"),
])
def test_rejected(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_server(text)


def test_loopback_detection() -> None:
    assert parse_server("127.3.4.5").is_loopback
    assert parse_server("[::1]:9").is_loopback
    assert not parse_server("192.0.2.1").is_loopback
