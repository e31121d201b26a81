"""plait.init's checks of what it is asked to start, made before anything starts."""

from __future__ import annotations

import pytest

import plait

MIB = 1 << 20


@pytest.mark.parametrize("options, words", [
    ({"store_memory": 64 * MIB, "object_store_memory": 32 * MIB}, "disagree"),
    ({"resources": {"disk": -1}}, "amounts >= 0"),
    ({"resources": {"GPU": 1}}, "num_gpus="),
    ({"num_gpus": 1, "address": "127.0.0.1:1"}, "joined cluster"),
])
def test_init_refuses_what_cannot_describe_its_nodes(options, words):
    assert not plait.is_initialized()
    with pytest.raises(ValueError, match=words):
        plait.init(**options)
    assert not plait.is_initialized()
