"""Raw ZeroMQ between two processes: the ceiling for plait's transfers over TCP loopback.

What plait's cross-host pull does, without plait: a sender process sends a buffer in 1 MiB
frames (``copy=False``, as a node sends from its arena) over ``streams`` PUSH connections,
each carrying one run of the buffer (plait.executor.wire.fetch.spans); the receiver takes
each frame straight into a buffer whose pages are already faulted in (``recv_into``, as a
node receives into its prefaulted replica block). Both contexts have ``streams`` I/O
threads. Encrypted: CurveZMQ, as a keyed plait cluster.

    python benchmarks/rawzmq.py --size-mib 512 --streams 1,2 --repeat 5

Each sample is the bytes over the time from the first frame received to the last (the
sender's start is not in it); also printed: CPU seconds per GB of each side (from
/proc/<pid>/stat: all threads), which a busy machine does not inflate the way it does
wall time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import numpy as np
import zmq

CHUNK = 1 << 20


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runs(nbytes: int, streams: int) -> list[tuple[int, int]]:
    chunks = -(-nbytes // CHUNK)
    cuts = [min(nbytes, chunks * k // streams * CHUNK) for k in range(streams + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def send(addresses: list[str], nbytes: int, keys: tuple | None, repeat: int) -> None:
    """The sender process: every round, each run over its own connection."""
    ctx = zmq.Context(io_threads=len(addresses))
    socks = []
    for address in addresses:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, 0)
        if keys is not None:
            sock.curve_publickey, sock.curve_secretkey = keys[2], keys[3]
            sock.curve_serverkey = keys[0]
        sock.connect(address)
        socks.append(sock)
    view = memoryview(np.ones(nbytes, dtype=np.uint8))
    for _ in range(repeat):
        for sock, (start, stop) in zip(socks, runs(nbytes, len(socks)), strict=True):
            for at in range(start, stop, CHUNK):
                sock.send(view[at:min(at + CHUNK, stop)], copy=False)
    time.sleep(3600)                         # killed by the receiver once all is in


def measure(nbytes: int, encrypted: bool, streams: int, repeat: int) -> dict:
    """GB/s per round, and CPU seconds per GB of the receiver and the sender."""
    ctx = zmq.Context(io_threads=streams)
    keys = None
    if encrypted:
        keys = (*zmq.curve_keypair(), *zmq.curve_keypair())
    socks = []
    for _ in range(streams):
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            sock.curve_server = True
            sock.curve_publickey, sock.curve_secretkey = keys[0], keys[1]
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        socks.append((sock, f"tcp://127.0.0.1:{port}"))
    sender = multiprocessing.get_context("spawn").Process(
        target=send, args=([a for _, a in socks], nbytes, keys, repeat + 1), daemon=True)
    sender.start()
    view = memoryview(np.ones(nbytes, dtype=np.uint8))     # faulted in, as a prefaulted block
    rates, cpu = [], []
    try:
        for k in range(repeat + 1):
            rates_cpu = receive_round(socks, view, nbytes, sender.pid)
            if k:                                           # round 0: connect, warm-up
                rates.append(rates_cpu[0])
                cpu.append(rates_cpu[1:])
    finally:
        sender.kill()
        ctx.destroy(linger=0)
    return {"rates": rates, "receiver_cpu": statistics.median(c[0] for c in cpu),
            "sender_cpu": statistics.median(c[1] for c in cpu)}


def receive_round(socks: list, view: memoryview, nbytes: int, sender: int
                  ) -> tuple[float, float, float]:
    poller = zmq.Poller()
    todo = {}
    for (sock, _), (start, stop) in zip(socks, runs(nbytes, len(socks)), strict=True):
        poller.register(sock, zmq.POLLIN)
        todo[sock] = [start, stop]
    t0 = None
    while todo:
        ready = poller.poll(60_000)
        if not ready:
            raise TimeoutError("the sender sent nothing for 60 s")
        if t0 is None:
            t0 = time.perf_counter()
            cpu0 = cpu_seconds(os.getpid()), cpu_seconds(sender)
        for sock, _ in ready:
            run = todo[sock]
            sock.recv_into(view[run[0]:min(run[0] + CHUNK, run[1])])
            run[0] = min(run[0] + CHUNK, run[1])
            if run[0] >= run[1]:
                del todo[sock]
                poller.unregister(sock)
    seconds = time.perf_counter() - t0
    gb = nbytes / 1e9
    return (gb / seconds, (cpu_seconds(os.getpid()) - cpu0[0]) / gb,
            (cpu_seconds(sender) - cpu0[1]) / gb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", default="512")
    ap.add_argument("--streams", default="1,2")
    ap.add_argument("--transports", default="tcp,encrypted")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}")
    for size in [int(s) << 20 for s in args.size_mib.split(",")]:
        for transport in args.transports.split(","):
            for streams in [int(s) for s in args.streams.split(",")]:
                out = measure(size, transport == "encrypted", streams, args.repeat)
                print(f"{size >> 20} MiB {transport} {streams} stream(s): "
                      f"median {statistics.median(out['rates']):.2f} GB/s "
                      f"({' '.join(f'{r:.2f}' for r in out['rates'])}); CPU s/GB "
                      f"receiver {out['receiver_cpu']:.2f}, sender {out['sender_cpu']:.2f}; "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
