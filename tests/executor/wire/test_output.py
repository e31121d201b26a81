"""Ray's prefix of a worker's printed line, as the driver and a CLI node's log show it."""

from __future__ import annotations

from plait.executor.wire.output import prefix
from plait.executor.wire import protocol as p


def test_the_prefix_names_the_call_the_pid_and_another_hosts_address():
    said = p.Output("node-1", 4242, "f", ("hi",))
    assert prefix(said) == "(f pid=4242) "
    assert prefix(said, "10.0.0.2") == "(f pid=4242, ip=10.0.0.2) "
    assert prefix(p.Output("node-1", 7, "", ("idle",))) == "(pid=7) "
