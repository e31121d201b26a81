"""What runs inside an engine's worker, tested without an engine."""

from __future__ import annotations

from plait.engines.task import Spec


def test_a_spec_travels_as_bytes_and_comes_back_equal():
    spec = Spec("f-1", "f@3a9c", b"\x80\x05function", "f", "node-2", ("put-1", "g-2.0"),
                ("f-1.0", "f-1.1"), b"\x80\x05call")
    data = spec.to_bytes()
    assert isinstance(data, bytes)
    assert Spec.from_bytes(data) == spec
