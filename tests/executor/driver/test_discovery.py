"""Finding a cluster by address: what ``plait.init(address=...)`` accepts and refuses."""

from __future__ import annotations

import pytest

import plait
from plait.errors import ClusterError
from plait.executor.driver.discovery import host_port


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:7480", "127.0.0.1:7480"),
    ("tcp://10.0.0.5:1", "10.0.0.5:1"),
    ("head.example:65535", "head.example:65535"),
])
def test_an_address_is_host_and_port(address, expected):
    assert host_port(address) == expected


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:", ":7480", "127.0.0.1:x",
                                     "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:70000"])
def test_an_address_without_a_port_a_head_can_listen_on_is_refused(address):
    with pytest.raises(ClusterError, match="HOST:PORT, the port 1 to 65535"):
        host_port(address)


def test_init_refuses_such_an_address_before_connecting():
    with pytest.raises(ClusterError, match="got '127.0.0.1:70000'"):
        plait.init(address="127.0.0.1:70000")
    assert not plait.is_initialized()
