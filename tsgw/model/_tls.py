"""TLS termination in the model: which certificate a listener presents for which SNI names, and
the certificates themselves (delivered to Envoy over SDS, never mounted in a proxy pod)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TlsCertificate", "TlsSecret"]


@dataclass(frozen=True, slots=True)
class TlsCertificate:
    """One SNI-selected certificate of a listener: a filter chain of its own."""

    secret: str
    """Name of the group's :class:`TlsSecret` (the SDS resource name)."""
    hostnames: tuple[str, ...] = ()
    """SNI names the chain matches; empty: any name (the port's default certificate)."""


@dataclass(frozen=True, slots=True)
class TlsSecret:
    """A certificate chain and its private key, PEM, as an SDS resource of the group."""

    name: str
    """``<namespace>/<Secret name>``: unique within a group."""
    certificate_chain: bytes
    private_key: bytes
    not_after: str = ""
    """The leaf's expiry (RFC 3339), for status messages."""

    def __repr__(self) -> str:  # never print a private key by accident
        return f"TlsSecret({self.name!r}, not_after={self.not_after!r})"
