"""The dashboard's server without a cluster: a fake head answers its Source (the same
messages a real head sends), and an HTTP client asks as a browser or Prometheus would."""

from __future__ import annotations

import pickle

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx2")

from starlette.testclient import TestClient  # noqa: E402

from plait.dashboard.app import make_app  # noqa: E402
from plait.dashboard.guard import csrf_of  # noqa: E402
from plait.dashboard.source import Source  # noqa: E402
from plait.errors import ClusterError, TaskError  # noqa: E402
from plait.executor.wire import protocol as p  # noqa: E402
from plait.store.store import ObjectSummary, StoreSummary  # noqa: E402

TOKEN = "s3cret-token"
HOST, PORT = "127.0.0.1", 8999
BASE = f"http://{HOST}:{PORT}"
MIB = 1 << 20
NOW = 1_700_000_000.0
ERROR = pickle.dumps(TaskError("inc", "inc-2", "node-1", "Traceback (most recent call "
                                                         "last):\n  ...\nValueError: bad\n"))


def info(node: str) -> p.NodeInfo:
    return p.NodeInfo(node, f"tcp://127.0.0.1:60{node[-1]}", 100, node == "node-0", 2,
                      f"arena-{node}", 64 * MIB)


def node_snapshot(node: str, cpu: float, running: tuple[str, ...] = ()) -> p.NodeSnapshot:
    big = ObjectSummary("put-1", 8 * MIB, "pinned", "example.py:3")
    store = StoreSummary(node, 64 * MIB, 16 * MIB, 8 * MIB, 2, 4 * MIB, 1, 0.0, 0.0, (big,),
                         spilled_total=4 * MIB)
    workers = (p.WorkerState(0, 101, "busy" if running else "idle", False, ("inc",) * bool(running),
                             30 * MIB),
               p.WorkerState(1, 102, "blocked", False, (), 30 * MIB))
    return p.NodeSnapshot(0, node, store, workers, tuple((t, "inc") for t in running), cpu,
                          90 * MIB, (("inc", 1),))


class FakeHead:
    """Answers like a head: each SnapshotRequest gets the next state of a small run."""

    def __init__(self) -> None:
        self.polls = 0
        self.plans = 0
        self.told: list[p.Message] = []
        self.down = False

    def ask(self, message: p.Message) -> p.Message:
        if self.down:
            raise ClusterError("the plait head did not answer a SnapshotRequest within 10 s")
        if isinstance(message, p.SnapshotRequest):
            self.polls += 1
            return self.snapshot(message)
        if isinstance(message, p.TraceRequest):
            events = (p.TaskEvent("inc-2", "inc", "node-1", 0, NOW - 2, NOW - 1, True),
                      p.TransferEvent("put-1", "node-0", "node-1", 8 * MIB, NOW - 3, NOW - 2.5))
            return p.TraceReport(message.request, events if message.since < 0 else (), 2)
        assert isinstance(message, p.PlanRequest)
        self.plans += 1
        return p.PlanReport(message.request, 1, (
            ("put-x", "make", "node-0", (), ("put-x",), ""),
            ("inc-2", "inc", "node-1", ("put-x",), ("inc-2",), ""),
            ("inc-3", "inc", "node-1", ("put-x",), ("inc-3",), "")), 8 * MIB)

    def snapshot(self, message: p.SnapshotRequest) -> p.Snapshot:
        notices = (p.Notice(NOW, "error", "inc-2", "inc failed on node-1", ERROR),) \
            if message.since == 0 else ()
        dead = p.DeadNode("node-2", NOW - 5, "no heartbeat for 4 s", info("node-2"))
        return p.Snapshot(
            message.request, "ab12", NOW + self.polls, (info("node-0"), info("node-1")),
            (0.1, 0.4), (node_snapshot("node-0", 1.0 * self.polls),
                         node_snapshot("node-1", 2.0 * self.polls, ("inc-3",))), (dead,),
            (p.FunctionTally("inc", 10, 6, 1, 2),), 8 * MIB, 1, 1,
            (("put-x", "done"), ("inc-2", "failed"), ("inc-3", "running")), 8 * MIB,
            notices, 1, ((ObjectSummary("put-1", 8 * MIB, "pinned", "example.py:3"), "node-0",
                          ("node-0", "node-1"), ("pid 4242",)),),
            (p.ActorRow("actor-7", "Counter", "tally", "node-1", "alive", 1, False),
             p.ActorRow("actor-3", "Counter", "", "node-0", "dead", 0, False)))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def head() -> FakeHead:
    return FakeHead()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(head, clock) -> TestClient:
    source = Source(head.ask, head.told.append, clock)
    return TestClient(make_app(source, TOKEN, HOST, PORT), base_url=BASE)


def signed_in(client: TestClient) -> TestClient:
    answer = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert "httponly" in answer.headers["set-cookie"].lower()
    assert "samesite=strict" in answer.headers["set-cookie"].lower()
    return client


# -- who may see it ----------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/api/state", "/api/plan", "/metrics",
                                  "/static/app.js", "/nothing-here"])
def test_without_the_token_every_path_is_403_and_no_data(client, head, path):
    answer = client.get(path)
    assert answer.status_code == 403 and "needs its token" in answer.text
    assert head.polls == 0 and "node-0" not in answer.text


def test_a_wrong_token_is_refused_as_no_token(client):
    assert client.get("/api/state?token=guess").status_code == 403
    client.cookies.set(f"plait-dashboard-{PORT}", "guess")
    assert client.get("/api/state").status_code == 403


def test_the_token_in_the_url_becomes_a_cookie_and_leaves_the_url(client):
    signed_in(client)
    page = client.get("/")
    assert page.status_code == 200 and csrf_of(TOKEN) in page.text
    assert TOKEN not in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200


def test_a_request_for_another_host_name_is_refused_even_with_the_token(client):
    """DNS rebinding: evil.example resolving to 127.0.0.1 still names evil.example."""
    answer = client.get(f"/api/state?token={TOKEN}", headers={"host": f"evil.example:{PORT}"})
    assert answer.status_code == 403


def test_a_post_needs_the_csrf_token_and_the_page_origin(client, head):
    signed_in(client)
    client.get("/api/state")
    for headers in ({}, {"origin": BASE}, {"x-plait-csrf": csrf_of(TOKEN)},
                    {"origin": "http://evil.example", "x-plait-csrf": csrf_of(TOKEN)}):
        answer = client.post("/api/cancel", json={"task": "inc-3"}, headers=headers)
        assert answer.status_code == 403, headers
    assert head.told == []
    answer = client.post("/api/cancel", json={"task": "inc-3"},
                         headers={"origin": BASE, "x-plait-csrf": csrf_of(TOKEN)})
    assert answer.status_code == 200 and head.told == [p.Cancel(("inc-3",))]


def test_only_a_waiting_or_running_task_of_the_plan_is_cancelled(client, head):
    signed_in(client)
    headers = {"origin": BASE, "x-plait-csrf": csrf_of(TOKEN)}
    for task in ("inc-2", "nobody"):              # failed already; not in the plan
        assert client.post("/api/cancel", json={"task": task}, headers=headers).status_code == 404
    assert client.post("/api/cancel", content=b"[", headers=headers).status_code == 400
    assert head.told == []


def test_only_a_live_actor_is_killed_and_for_good(client, head):
    signed_in(client)
    headers = {"origin": BASE, "x-plait-csrf": csrf_of(TOKEN)}
    assert client.post("/api/kill-actor", json={"actor": "actor-7"}).status_code == 403
    for actor in ("actor-3", "nobody"):           # dead already; never existed
        answer = client.post("/api/kill-actor", json={"actor": actor}, headers=headers)
        assert answer.status_code == 404 and actor in answer.json()["error"]
    assert client.post("/api/kill-actor", json={"task": "x"}, headers=headers).status_code == 400
    assert head.told == []
    answer = client.post("/api/kill-actor", json={"actor": "actor-7"}, headers=headers)
    assert answer.status_code == 200 and answer.json() == {"killed": "actor-7"}
    (kill,) = head.told
    assert isinstance(kill, p.KillActor) and kill.actor == "actor-7" and kill.no_restart
    assert "dashboard" in kill.reason


# -- what it shows ---------------------------------------------------------------------

def test_the_state_has_every_page(client, head, clock):
    signed_in(client)
    first = client.get("/api/state").json()
    clock.now += 1.0
    state = client.get("/api/state").json()
    node0, node1 = state["cluster"]
    assert (node0["node"], node0["head"], node1["node"]) == ("node-0", True, "node-1")
    assert node1["workers"] == {"busy": 1, "idle": 0, "blocked": 1, "standin": 0}
    assert node0["store"] == {"capacity": 64 * MIB, "pinned": 8 * MIB, "memory": 8 * MIB,
                              "spilled": 4 * MIB, "free": 48 * MIB, "objects": 2,
                              "spilled_total": 4 * MIB, "restored_total": 0}
    assert first["cluster"][0]["cpu"] is None and node1["cpu"] == 200.0   # 2 s CPU in 1 s
    assert state["dead"][0]["node"] == "node-2" and "heartbeat" in state["dead"][0]["reason"]
    assert state["run"] == [{"function": "inc", "total": 10, "waiting": 2, "running": 1,
                             "done": 6, "failed": 1, "retried": 4}]
    assert state["plan"]["states"]["inc-3"] == "running"
    assert state["plan"]["moved"] == 8 * MIB and state["plan"]["predicted"] is None
    assert head.plans == 0                  # no page showed the plan: nobody asked for it
    client.get("/api/plan")
    assert client.get("/api/state").json()["plan"]["predicted"] == 8 * MIB
    assert state["objects"][0]["copies"] == ["node-0", "node-1"]
    assert state["objects"][0]["holders"] == ["pid 4242"]
    assert state["actors"][0] == {"actor": "actor-7", "class": "Counter", "name": "tally",
                                  "node": "node-1", "state": "alive", "restarts": 1,
                                  "detached": False}
    (error,) = state["events"]
    assert error["kind"] == "error" and "ValueError: bad" in error["traceback"]
    assert [t["task"] for t in state["stream"]["tasks"]] == ["inc-2"]
    assert state["stream"]["transfers"][0]["nbytes"] == 8 * MIB


def test_pages_polling_together_share_one_snapshot(client, head, clock):
    signed_in(client)
    for _ in range(3):
        client.get("/api/state")
    assert head.polls == 1
    clock.now += 1.0
    client.get("/metrics")
    assert head.polls == 2


def test_the_plan_is_plaits_own_picture_with_its_tasks_per_box(client):
    signed_in(client)
    plan = client.get("/api/plan").json()
    assert plan["number"] == 1 and plan["svg"].startswith("<svg")
    assert plan["members"]["t:inc-3"] == ["inc-3"] and 'data-key="t:inc-3"' in plan["svg"]


def test_metrics_speak_prometheus_text_to_a_bearer_token(client):
    answer = client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = answer.text.splitlines()
    assert 'plait_tasks{function="inc",state="running"} 1' in lines
    assert 'plait_tasks_done_total{function="inc"} 6' in lines
    assert 'plait_store_bytes{node="node-0",state="spilled"} 4194304' in lines
    assert "plait_transfer_bytes_total 8388608" in lines
    assert 'plait_nodes{state="dead"} 1' in lines
    names = {line.split()[2] for line in lines if line.startswith("# TYPE")}
    assert all(line.split("{")[0].split()[0] in names for line in lines
               if not line.startswith("#"))


def test_a_head_that_does_not_answer_is_a_503_that_says_so(client, head):
    signed_in(client)
    head.down = True
    answer = client.get("/api/state")
    assert answer.status_code == 503 and "did not answer" in answer.json()["error"]
