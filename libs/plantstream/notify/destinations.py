"""Where webhooks may go: public addresses, plus the networks the operator allows.

A webhook URL is written by whoever configures a route, and the notifier POSTs from inside
the platform's network: without a rule, a route could make it talk to the cloud metadata
service (169.254.169.254), the broker, ClickHouse or any internal host (server-side request
forgery). So a webhook host must resolve only to public addresses; loopback, private
(RFC 1918, IPv6 unique-local), link-local, carrier-grade NAT, multicast, unspecified and
reserved addresses are refused unless a network in the notify config's ``webhook_allow``
list (CIDRs, e.g. ``10.20.0.0/16`` for the plant's own ticket system) contains them.

Checked twice: at start-up for URLs whose host is an IP address (a clear configuration
error), and before every POST for the addresses the host resolves to then. The POST then
connects to the address that was checked (:mod:`plantstream.notify.channels` pins it), not to
a second answer of the resolver: a name whose answer changes between the check and the
connection (DNS rebinding) cannot slip an internal address in.

>>> policy = DestinationPolicy.of(["10.20.0.0/16"])
>>> policy.refusal("10.20.1.5") is None, policy.refusal("8.8.8.8") is None
(True, True)
>>> policy.refusal("169.254.169.254")
'169.254.169.254 is a link-local address'
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from plantstream.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def _kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` is not a public address (None: it is)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _kind(ip.ipv4_mapped)
    for kind, test in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                       ("unspecified", ip.is_unspecified), ("multicast", ip.is_multicast),
                       ("reserved", ip.is_reserved), ("private", ip.is_private)):
        if test:
            return kind
    if ip in _CGNAT:
        return "carrier-grade NAT"
    return None


@dataclass(frozen=True)
class DestinationPolicy:
    allow: tuple[Network, ...] = ()

    @classmethod
    def of(cls, networks: Iterable[str]) -> DestinationPolicy:
        out = []
        for n in networks:
            try:
                out.append(ipaddress.ip_network(str(n).strip(), strict=False))
            except ValueError:
                raise ConfigError(f"webhook_allow: {n!r} is not a network; write e.g. 10.20.0.0/16") from None
        return cls(tuple(out))

    def refusal(self, address: str) -> str | None:
        """Why a POST to ``address`` (an IP) is refused, or None when it is allowed."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        kind = _kind(ip)
        if kind is None or any(ip in net for net in self.allow if net.version == ip.version):
            return None
        article = "an" if kind[0] in "aeiou" else "a"
        return f"{address} is {article} {kind} address"

    def check_url(self, url: str) -> str | None:
        """At configuration time: the refusal for a URL whose host is an IP literal."""
        host = urllib.parse.urlsplit(url).hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None  # a name: checked when it is resolved, before each POST
        return self.refusal(host)

    def check_resolved(self, url: str) -> str:
        """Before a POST: the address to connect to (the first the host resolves to, every one
        of them checked); raise :class:`Refused` when any is refused."""
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Refused(f"cannot resolve webhook host {host!r}: {exc}") from None
        for info in infos:
            why = self.refusal(str(info[4][0]))
            if why is not None:
                raise Refused(f"webhook host {host!r} refused: {why}; add its network to "
                              "webhook_allow in the notify config if it is meant")
        if not infos:
            raise Refused(f"webhook host {host!r} resolves to no address")
        return str(infos[0][4][0])


class Refused(Exception):  # noqa: N818 - a refusal, not a crash
    """A webhook destination the policy refuses (not retried: it would be refused again)."""
