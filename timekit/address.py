"""Server addresses: `HOST`, `HOST:PORT`, `[v6]:PORT`, `v6` -> normalised (host, port)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from timekit.errors import UsageError
from timekit.lab_names import LAB_PREFIX

DEFAULT_NTP_PORT = 123
NTS_SCHEME = "nts://"
NTS_KE_DEFAULT_PORT = 4460
# \Z, not $: `$` also matches before a trailing newline, and "6\n" was once accepted as a host name
# (found by the address fuzzer, fuzz/targets.py)
_HOSTNAME = re.compile(r"^(?=.{1,253}\Z)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)"
                       r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?\Z")


def format_hostport(host: str, port: int) -> str:
    """`host:port`, with IPv6 literals bracketed: `[::1]:123`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """A server as the user named it, normalised to host and port."""

    host: str
    port: int  # NTP's; for an NTS server its key-exchange port (NTP's is the KE's answer)
    nts: bool = False  # `nts://HOST[:KE_PORT]`: authenticated (RFC 8915), never plain

    @property
    def name(self) -> str:
        """Normalised `host:port` (`[v6]:port` for IPv6 literals); `nts://host:ke_port` for NTS."""
        return (NTS_SCHEME if self.nts else "") + format_hostport(self.host, self.port)

    @property
    def is_loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 and `localhost`: polled fast by default."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return self.name


_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # an interface name (IFNAMSIZ - 1) or index; fullmatch only


def _port(text: str, original: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5:  # '²', '١٢٣', '１２３' are digits too
        raise UsageError(f"bad port in server address {original!r}: {text!r} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise UsageError(f"bad port in server address {original!r}: {port} is not in 1-65535")
    return port


def parse_servers(texts: Iterable[str], default_port: int = DEFAULT_NTP_PORT) -> list[ServerAddress]:
    """Each distinct server once, in the order first given ("a" and "a:123" are one server)."""
    unique: dict[str, ServerAddress] = {}
    for server in (parse_server(t, default_port) for t in texts):
        unique.setdefault(server.name, server)
    return list(unique.values())


NODE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}")  # a node's name: a label, a hook's argument


@dataclass(frozen=True, slots=True)
class NamedServer:
    """A node of a cluster or fleet: its name (the hook's TIMEKIT_NODE, a metric's label) and its NTP
    endpoint (in real clusters each node's chronyd serves its peers)."""

    name: str
    address: ServerAddress


def parse_named_server(text: str) -> NamedServer:
    """`HOST[:PORT]` (named by its endpoint) or `NAME HOST[:PORT]`; raise UsageError."""
    fields = text.split()
    if not 1 <= len(fields) <= 2:
        raise UsageError(f"expected 'HOST[:PORT]' or 'NAME HOST[:PORT]', got {text.strip()!r}")
    address = parse_server(fields[-1])
    if len(fields) == 1:
        return NamedServer(address.name, address)  # named by its endpoint ([v6]:port as well)
    if not NODE_NAME.fullmatch(fields[0]):
        raise UsageError(f"node name {fields[0]!r}: use letters, digits and _.:@- (at most 128)")
    return NamedServer(fields[0], address)


def parse_server(text: str, default_port: int = DEFAULT_NTP_PORT) -> ServerAddress:
    """Parse `HOST`, `HOST:PORT`, `[IPv6]:PORT`, a bare IPv6 literal, `lab:NAME` (a running lab
    server, by its name), or any of the first four as `nts://...` (an NTS server, its key-exchange
    port defaulting to 4460); raise UsageError."""
    text = text.strip()
    if text.lower().startswith(NTS_SCHEME):
        rest = text[len(NTS_SCHEME):].rstrip("/")
        if rest.startswith(LAB_PREFIX) or "/" in rest:
            raise UsageError(f"malformed NTS server {text!r} (use nts://HOST[:KE_PORT])")
        plain = parse_server(rest, NTS_KE_DEFAULT_PORT)
        return ServerAddress(plain.host, plain.port, nts=True)
    original = text
    if not text:
        raise UsageError("empty server address")
    if text.startswith(LAB_PREFIX):
        from timekit.lab_names import lab_address

        text = lab_address(text[len(LAB_PREFIX):])
        if text.lower().startswith(NTS_SCHEME):  # the lab's NTS server
            return parse_server(text)
    if text.startswith("["):
        m = re.fullmatch(r"\[([^\]]+)\](?::(.*))?", text)
        if not m:
            raise UsageError(f"malformed server address {original!r} (use [v6addr]:port)")
        host, port_text = m.group(1), m.group(2)
        host = _ipv6(host, original)
        port = default_port if port_text is None else _port(port_text, original)
        return ServerAddress(host, port)
    if text.count(":") > 1:  # bare IPv6 literal, no port
        return ServerAddress(_ipv6(text, original), default_port)
    host, sep, port_text = text.partition(":")
    port = _port(port_text, original) if sep else default_port
    if not host:
        raise UsageError(f"malformed server address {original!r}: no host")
    try:
        host = str(_unicast(ipaddress.IPv4Address(host), original))
    except ValueError:
        if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
            raise UsageError(f"malformed host name in server address {original!r}") from None
        host = host.lower().rstrip(".")
    return ServerAddress(host, port)


def _unicast(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, original: str) -> str:
    """`addr` as text when it can be one server; UsageError for 0.0.0.0, ::, broadcast, multicast."""
    why = ("the unspecified address" if addr.is_unspecified else "a multicast address" if addr.is_multicast
           else "the broadcast address" if addr == ipaddress.IPv4Address("255.255.255.255") else None)
    if why:
        raise UsageError(f"server address {original!r} is {why}, not a server")
    return str(addr)


def _ipv6(text: str, original: str) -> str:
    """A normalised IPv6 literal, with a zone id only when it is an interface name or index (no
    spaces, newlines or NUL: the zone reaches hook environments, CSV and Prometheus labels)."""
    literal, sep, zone = text.partition("%")
    if sep and not _ZONE.fullmatch(zone):  # fullmatch: `$` would let a trailing newline through
        raise UsageError(f"bad IPv6 zone id in server address {original!r}: use an interface name "
                         "or index (letters, digits, '_', '.', '-'; at most 15)")
    try:
        addr = ipaddress.IPv6Address(literal)
    except ValueError:
        raise UsageError(f"malformed IPv6 address in {original!r}") from None
    return _unicast(addr, original) + (f"%{zone}" if sep else "")
