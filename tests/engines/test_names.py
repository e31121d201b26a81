"""Node names shared by every session on an engine (plait/engines/names.py), on a plain
table: no engine, no processes."""

from __future__ import annotations

from plait.engines import names


def name_all(table: dict[str, str], known: dict[str, str], engine_ids: list[str]) -> list[str]:
    """What a session does on meeting these nodes (ForeignEngine.name_nodes)."""
    for engine_id in engine_ids:
        if engine_id not in known:
            known[engine_id] = names.claim(engine_id, table.get, names.table_add(table),
                                           names.search_start(known))
    return [known[engine_id] for engine_id in engine_ids]


def test_the_first_session_names_the_nodes_in_the_order_it_meets_them():
    table: dict[str, str] = {}
    assert name_all(table, {}, ["head", "b", "a"]) == ["node-0", "node-1", "node-2"]


def test_a_later_session_meeting_the_nodes_in_another_order_reads_the_same_names():
    table: dict[str, str] = {}
    name_all(table, {}, ["head", "a", "b", "c"])
    # a worker's session, after node a died: the engine's list is one shorter
    assert name_all(table, {}, ["c", "head", "b"]) == ["node-3", "node-0", "node-2"]


def test_a_node_that_joins_later_takes_the_next_name_whoever_meets_it_first():
    table: dict[str, str] = {}
    driver: dict[str, str] = {}
    name_all(table, driver, ["head", "a", "b"])
    in_task: dict[str, str] = {}
    assert name_all(table, in_task, ["new"]) == ["node-3"]       # knows no other node
    assert name_all(table, driver, ["head", "b", "new"]) == ["node-0", "node-2", "node-3"]


def test_a_name_is_never_given_twice_when_two_sessions_claim_at_once():
    table: dict[str, str] = {}
    name_all(table, {}, ["head"])
    add = names.table_add(table)

    def add_after_another_session(key: str, value: str) -> bool:
        """The other session claims "x" first, between this one's read and its add."""
        if not table.get(names.NODE + "x"):
            assert name_all(table, {}, ["x"]) == ["node-1"]
        return add(key, value)

    assert names.claim("x", table.get, add_after_another_session, 1) == "node-1"
    assert names.claim("y", table.get, add, 1) == "node-3"   # node-2: taken, unused


def test_search_start_looks_past_every_name_known():
    assert names.search_start({}) == 0
    assert names.search_start({"a": "node-0", "b": "node-7", "c": "node-2"}) == 8
