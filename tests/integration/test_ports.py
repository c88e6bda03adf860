"""Ports the tests give programs cannot be taken before the programs bind them.

A clean-clone run failed when containerboot's health port, picked free a moment earlier by
``bind(0)``, was taken by another process first. ``free_port`` now picks below the kernel's
ephemeral range and locks the pick against every other test process; a namespace of the
tests' own hands out ports from a counter; "nothing listens here" is a port held, not freed.
"""

from __future__ import annotations

import fcntl
import os
import socket

import pytest

from tests.support.netns import NetNS
from tests.support.process import _PORT_LOCKS, ephemeral_ports, free_port, refusing_port


def test_free_ports_lie_below_the_ephemeral_range_and_are_never_handed_out_twice() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(p < ephemeral_ports().start for p in ports), ports  # no connect()/bind(0) gets one


def test_another_process_cannot_pick_a_port_this_one_holds() -> None:
    port = free_port()
    fd = os.open(_PORT_LOCKS / str(port), os.O_RDWR)  # a new open file description, as another process has
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_a_refusing_port_refuses_and_cannot_be_bound_by_anyone_else() -> None:
    with refusing_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with socket.socket() as other, pytest.raises(OSError, match="already in use"):
            other.bind(("127.0.0.1", port))


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_a_private_namespace_hands_out_distinct_ports_below_its_ephemeral_range() -> None:
    ns = NetNS(prefix="tsgw-ports")
    try:
        ports = [ns.port() for _ in range(20)]
        with ns.entered():
            top = ephemeral_ports().start
        assert len(set(ports)) == len(ports)
        assert all(p < top for p in ports), ports
    finally:
        ns.delete()
