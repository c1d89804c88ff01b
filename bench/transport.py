"""Which transport for the live runtime: py-ipv8 (UDP, per-datagram signatures) or asyncio TCP with length-prefixed,
Ed25519-signed frames (plexus.live.transport), measured the same way on loopback among N processes.

    python bench/transport.py                      # both, 20 processes, 6.8 MB and 26 MB models, fan-out 2
    python bench/transport.py --transports tcp     # only plexus's TCP transport
    python bench/transport.py --nodes 10 --sizes 6.8 --pings 50

Each process is one node. Phases, each started on every node at once:

- ``ping``: every node sends ``--pings`` 100-byte messages, one at a time, to its successor and waits for the
  application-level acknowledgement: the round-trip latency of a small message (median and 99th percentile over
  all nodes);
- ``bulk SIZE``: every node sends a SIZE-MB model to its ``--fanout`` successors at once (a D-PSGD round on a
  ring-like graph) and waits until its sends are acknowledged and its own incoming models are complete. Reported:
  aggregate throughput (MB moved / wall time of the phase) and CPU seconds per MB moved (user + system time of all
  node processes during the phase, divided by the MB moved).

py-ipv8 sends each message as one UDP datagram and has no transfer layer for large payloads (its EVA protocol is
gone from the current release), so this benchmark gives it one, as an application on py-ipv8 would need: the
model is cut into chunks of ``--chunk`` bytes (default 60,000: the largest that fits a loopback datagram with
ipv8's headers, its best case; 1,200 fits an internet MTU), each an authenticated (signed) ipv8 message, sent with
a congestion window (additive increase per acknowledged window, halved on loss, at most ``--window`` chunks),
out-of-order chunks kept by the receiver, cumulative acknowledgements, the first missing chunk resent after three
duplicate acknowledgements and the whole window after 0.3 s without progress. Without congestion control such a
UDP sender collapses on a loaded machine (more than 10x the chunks resent in our first attempts). Keys are
generated per node; no bootstrap server or walker is used (peers are given to each other).

py-ipv8 is not a dependency of plexus: ``--ipv8-venv DIR`` (default ``bench/.ipv8-venv``, git-ignored) is created
with ``python -m venv`` and ``pip install pyipv8`` when it does not exist. The versions used are printed.
Measured on a loaded 2-core machine, figures move by +-20% between runs; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# ============================================================================================ workers
def worker_main(kind: str, host: str) -> None:
    """A node process: report READY, receive the peer table, run the phases it is told to run."""
    if kind == "tcp":
        asyncio.run(TcpWorker(host).main())
    else:
        asyncio.run(Ipv8Worker(host).main())


class Worker:
    """What both transports share: the line protocol with the coordinator and the phases."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.index = 0
        self.peers: list[dict[str, Any]] = []
        self.received: dict[int, int] = {}  # phase id -> payloads fully received
        self.arrived = asyncio.Event()

    async def main(self) -> None:
        me = await self.setup()
        print("READY " + json.dumps(me), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        table = json.loads((await reader.readline()).decode())
        self.index = table["index"]
        self.peers = table["peers"]
        await self.connect_peers()
        print("SET", flush=True)
        while True:
            line = (await reader.readline()).decode().strip()
            if not line or line == "QUIT":
                break
            phase, *args = line.split()
            cpu = time.process_time()
            started = time.perf_counter()
            if phase == "ping":
                result = await self.ping(int(args[0]))
            else:
                result = await self.bulk(int(args[0]), int(args[1]), int(args[2]))
            result["cpu_s"] = time.process_time() - cpu
            result["wall_s"] = time.perf_counter() - started
            print("DONE " + json.dumps(result), flush=True)
        await self.close()

    def successor(self, k: int) -> dict[str, Any]:
        return self.peers[(self.index + k) % len(self.peers)]

    async def bulk(self, phase: int, size: int, fanout: int) -> dict[str, Any]:
        payload = os.urandom(size)
        sends = [self.send_big(self.successor(k + 1), phase, payload) for k in range(fanout)]
        failures = sum(1 for ok in await asyncio.gather(*sends) if not ok)
        while self.received.get(phase, 0) < fanout:
            self.arrived.clear()
            await self.arrived.wait()
        return {"failures": failures}

    async def ping(self, count: int) -> dict[str, Any]:
        peer = self.successor(1)
        rtts = []
        for i in range(count):
            started = time.perf_counter()
            await self.send_small(peer, i)
            rtts.append(time.perf_counter() - started)
        return {"rtts": rtts}

    def got(self, phase: int) -> None:
        self.received[phase] = self.received.get(phase, 0) + 1
        self.arrived.set()

    async def setup(self) -> dict[str, Any]:
        raise NotImplementedError

    async def connect_peers(self) -> None:
        raise NotImplementedError

    async def send_big(self, peer: dict[str, Any], phase: int, payload: bytes) -> bool:
        raise NotImplementedError

    async def send_small(self, peer: dict[str, Any], i: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class TcpWorker(Worker):
    """plexus.live.transport: TCP, signed frames (Ed25519 over a SHA-256 digest), application ACKs."""

    async def setup(self) -> dict[str, Any]:
        sys.path.insert(0, str(ROOT / "src"))
        from plexus.live.keys import Identity
        from plexus.live.transport import Limits, Transport

        self.identity = Identity.generate()
        limits = Limits(max_message_bytes=64 << 20, max_queue_bytes=512 << 20)
        self.transport = Transport(self.identity, "bench", self._deliver, lambda reason, peer: None, limits)
        _, port = await self.transport.start(self.host, 0)
        return {"id": self.identity.node_id.hex(), "port": port}

    def _deliver(self, sender: bytes, payload: bytes | bytearray) -> None:
        if len(payload) > 4:
            self.got(int.from_bytes(payload[:4], "big"))
        return None

    async def connect_peers(self) -> None:
        for peer in self.peers:
            self.transport.set_address(bytes.fromhex(peer["id"]), self.host, peer["port"])

    async def _send(self, peer: dict[str, Any], payload: bytes) -> bool:
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.transport.send(bytes.fromhex(peer["id"]), payload, lambda: None,
                            lambda error: future.done() or future.set_result(error))
        return await future is None

    async def send_big(self, peer: dict[str, Any], phase: int, payload: bytes) -> bool:
        return await self._send(peer, phase.to_bytes(4, "big") + payload)

    async def send_small(self, peer: dict[str, Any], i: int) -> None:
        await self._send(peer, b"p" * 100)

    async def close(self) -> None:
        await self.transport.close()


class Ipv8Worker(Worker):
    """py-ipv8: a Community with signed chunk messages, a sliding window and cumulative ACKs."""

    async def setup(self) -> dict[str, Any]:
        from dataclasses import dataclass

        from ipv8.community import Community, CommunitySettings
        from ipv8.keyvault.crypto import default_eccrypto
        from ipv8.lazy_community import lazy_wrapper
        from ipv8.messaging.interfaces.udp.endpoint import UDPEndpoint
        from ipv8.messaging.payload_dataclass import DataClassPayload
        from ipv8.peer import Peer
        from ipv8.peerdiscovery.network import Network

        chunk_size = int(os.environ.get("BENCH_CHUNK", "60000"))
        window = int(os.environ.get("BENCH_WINDOW", "32"))

        @dataclass
        class Chunk(DataClassPayload[1]):
            transfer: int
            index: int
            total: int
            data: bytes

        @dataclass
        class Ack(DataClassPayload[2]):
            transfer: int
            upto: int

        @dataclass
        class Ping(DataClassPayload[3]):
            nonce: int
            pad: bytes

        @dataclass
        class Pong(DataClassPayload[4]):
            nonce: int

        worker = self

        class Outgoing:
            def __init__(self, peer: Any, transfer: int, data: bytes) -> None:
                self.peer, self.transfer, self.data = peer, transfer, data
                self.total = max(1, math.ceil(len(data) / chunk_size))
                self.base = self.next = self.duplicates = 0
                self.cwnd = 2.0  # congestion window (chunks): additive increase, multiplicative decrease
                self.progress = time.monotonic()
                self.done = asyncio.get_running_loop().create_future()

        class Bench(Community):
            community_id = b"plexus-bench-xport-1"

            def __init__(self, settings: Any) -> None:
                super().__init__(settings)
                self.add_message_handler(Chunk, self.on_chunk)
                self.add_message_handler(Ack, self.on_ack)
                self.add_message_handler(Ping, self.on_ping)
                self.add_message_handler(Pong, self.on_pong)
                self.outgoing: dict[tuple[bytes, int], Outgoing] = {}
                self.incoming: dict[tuple[bytes, int], dict[str, Any]] = {}
                self.pongs: dict[int, asyncio.Future[None]] = {}

            def pump(self, out: Outgoing) -> None:
                while out.next < min(out.total, out.base + int(out.cwnd)):
                    worker.chunks_sent += 1
                    start = out.next * chunk_size
                    self.ez_send(out.peer, Chunk(out.transfer, out.next, out.total,
                                                 out.data[start:start + chunk_size]))
                    out.next += 1

            @lazy_wrapper(Chunk)
            def on_chunk(self, peer: Any, payload: Any) -> None:
                # out-of-order chunks are kept (within reach), the acknowledgement is cumulative
                key = (peer.mid, payload.transfer)
                state = self.incoming.setdefault(key, {"next": 0, "parts": {}, "acked": 0})
                index = payload.index
                if state["next"] <= index < state["next"] + 4 * window and index not in state["parts"]:
                    state["parts"][index] = payload.data
                    while state["next"] in state["parts"]:
                        state["next"] += 1
                done = state["next"] >= payload.total
                if done and state["acked"] < payload.total:
                    worker.got(payload.transfer >> 8)
                if done or index != state["next"] - 1 or state["next"] - state["acked"] >= 4:
                    state["acked"] = max(state["acked"], state["next"])
                    self.ez_send(peer, Ack(payload.transfer, state["next"]))

            @lazy_wrapper(Ack)
            def on_ack(self, peer: Any, payload: Any) -> None:
                out = self.outgoing.get((peer.mid, payload.transfer))
                if out is None:
                    return
                if payload.upto <= out.base:
                    out.duplicates += 1
                    if out.duplicates == 3:  # fast retransmit of the first missing chunk
                        out.cwnd = max(1.0, out.cwnd / 2)
                        self.resend(out)
                    return
                out.duplicates = 0
                out.cwnd = min(float(window), out.cwnd + (min(payload.upto, out.total) - out.base) / out.cwnd)
                out.base = min(payload.upto, out.total)
                out.next = max(out.next, out.base)
                out.progress = time.monotonic()
                if out.base >= out.total:
                    if not out.done.done():
                        out.done.set_result(True)
                else:
                    self.pump(out)

            def resend(self, out: Outgoing) -> None:
                worker.chunks_sent += 1
                start = out.base * chunk_size
                self.ez_send(out.peer, Chunk(out.transfer, out.base, out.total, out.data[start:start + chunk_size]))

            @lazy_wrapper(Ping)
            def on_ping(self, peer: Any, payload: Any) -> None:
                self.ez_send(peer, Pong(payload.nonce))

            @lazy_wrapper(Pong)
            def on_pong(self, peer: Any, payload: Any) -> None:
                future = self.pongs.pop(payload.nonce, None)
                if future is not None and not future.done():
                    future.set_result(None)

            async def transfer(self, peer: Any, transfer: int, data: bytes) -> bool:
                out = Outgoing(peer, transfer, data)
                self.outgoing[(peer.mid, transfer)] = out
                self.pump(out)
                while not out.done.done():
                    try:
                        await asyncio.wait_for(asyncio.shield(out.done), 0.3)
                    except TimeoutError:
                        if time.monotonic() - out.progress > 0.3:  # no progress: resend what is in flight
                            out.progress = time.monotonic()
                            out.cwnd = max(1.0, out.cwnd / 2)
                            out.next = out.base
                            self.pump(out)
                del self.outgoing[(peer.mid, transfer)]
                return True

        # py-ipv8 compiles a payload class when it is first instantiated: do it before any is received
        self._compiled = (Chunk(0, 0, 0, b""), Ack(0, 0), Ping(0, b""), Pong(0))
        self.Ping = Ping
        self.Peer = Peer
        key = default_eccrypto.generate_key("curve25519")
        self.endpoint = UDPEndpoint(port=0, ip=self.host, sockopts=[
            (__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4 << 20),
            (__import__("socket").SOL_SOCKET, __import__("socket").SO_SNDBUF, 4 << 20)])
        await self.endpoint.open()
        self.community = Bench(CommunitySettings(my_peer=Peer(key), endpoint=self.endpoint, network=Network()))
        self.nonce = 0
        return {"id": key.pub().key_to_bin().hex(), "port": self.endpoint.get_address()[1]}

    async def connect_peers(self) -> None:
        self.ipv8_peers = [self.Peer(bytes.fromhex(p["id"]), (self.host, p["port"])) for p in self.peers]

    def _peer(self, peer: dict[str, Any]) -> Any:
        return self.ipv8_peers[self.peers.index(peer)]

    async def bulk(self, phase: int, size: int, fanout: int) -> dict[str, Any]:
        self.chunks_sent = 0
        result = await super().bulk(phase, size, fanout)
        needed = fanout * math.ceil(size / int(os.environ.get("BENCH_CHUNK", "60000")))
        result["resent_fraction"] = self.chunks_sent / needed - 1
        return result

    async def send_big(self, peer: dict[str, Any], phase: int, payload: bytes) -> bool:
        transfer = (phase << 8) | self.peers.index(peer)
        return await self.community.transfer(self._peer(peer), transfer, payload)

    async def send_small(self, peer: dict[str, Any], i: int) -> None:
        self.nonce += 1
        future = asyncio.get_running_loop().create_future()
        self.community.pongs[self.nonce] = future
        while True:
            self.community.ez_send(self._peer(peer), self.Ping(self.nonce, b"p" * 100))
            try:
                await asyncio.wait_for(asyncio.shield(future), 1.0)
                return
            except TimeoutError:
                continue

    async def close(self) -> None:
        await self.community.unload()
        self.endpoint.close()


# ============================================================================================ coordinator
def ipv8_python(venv: Path) -> tuple[str, str]:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with pyipv8 (not a plexus dependency) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "pyipv8"],
                       check=True)
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('pyipv8'), "
                              "m.version('ipv8-rust-tunnels'))"], capture_output=True, text=True, check=True)
    return str(python), version.stdout.strip()


class Cluster:
    def __init__(self, kind: str, python: str, nodes: int, host: str, env: dict[str, str]) -> None:
        self.kind = kind
        self.processes = [
            subprocess.Popen([python, str(Path(__file__).resolve()), "--worker", kind, "--host", host],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
            for _ in range(nodes)
        ]
        ready = [self._expect(p, "READY") for p in self.processes]
        peers = [json.loads(line) for line in ready]
        for i, process in enumerate(self.processes):
            assert process.stdin is not None
            process.stdin.write(json.dumps({"index": i, "peers": peers}) + "\n")
            process.stdin.flush()
        for process in self.processes:
            self._expect(process, "SET")

    @staticmethod
    def _expect(process: subprocess.Popen[str], word: str) -> str:
        assert process.stdout is not None
        while True:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"a worker exited (status {process.wait()}) instead of saying {word}")
            if line.startswith(word):
                return line[len(word):].strip()

    def phase(self, command: str) -> tuple[float, list[dict[str, Any]]]:
        started = time.perf_counter()
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(command + "\n")
            process.stdin.flush()
        results = [json.loads(self._expect(p, "DONE")) for p in self.processes]
        return time.perf_counter() - started, results

    def close(self) -> None:
        for process in self.processes:
            try:
                assert process.stdin is not None
                process.stdin.write("QUIT\n")
                process.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def measure(kind: str, python: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    cluster = Cluster(kind, python, args.nodes, args.host, env)
    report: dict[str, Any] = {}
    try:
        print(f"  {kind}: ping phase", file=sys.stderr, flush=True)
        _, results = cluster.phase(f"ping {args.pings}")
        rtts = sorted(r for result in results for r in result["rtts"])
        report["ping_median_ms"] = 1000 * statistics.median(rtts)
        report["ping_p99_ms"] = 1000 * rtts[int(0.99 * (len(rtts) - 1))]
        for phase, size_mb in enumerate(args.sizes, start=1):
            size = int(size_mb * 1e6)
            print(f"  {kind}: {size_mb:g} MB phase", file=sys.stderr, flush=True)
            wall, results = cluster.phase(f"bulk {phase} {size} {args.fanout}")
            moved = args.nodes * args.fanout * size / 1e6
            report[f"{size_mb:g}MB"] = {
                "wall_s": wall, "moved_mb": moved, "throughput_mb_s": moved / wall,
                "cpu_s_per_mb": sum(r["cpu_s"] for r in results) / moved,
                "failures": sum(r["failures"] for r in results),
            }
            if kind == "ipv8":
                report[f"{size_mb:g}MB"]["resent_fraction"] = statistics.mean(r["resent_fraction"] for r in results)
    finally:
        cluster.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--fanout", type=int, default=2)
    parser.add_argument("--sizes", default="6.8,26", help="model sizes in MB, comma separated")
    parser.add_argument("--pings", type=int, default=100)
    parser.add_argument("--transports", default="tcp,ipv8")
    parser.add_argument("--chunk", type=int, default=60000, help="ipv8: bytes of model per datagram")
    parser.add_argument("--window", type=int, default=32, help="ipv8: chunks in flight per transfer")
    parser.add_argument("--ipv8-venv", default=str(HERE / ".ipv8-venv"))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.host)
        return
    args.sizes = [float(s) for s in args.sizes.split(",")]
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import cryptography

    print(f"machine: {cpu}, {os.cpu_count()} cores; python {platform.python_version()}; "
          f"cryptography {cryptography.__version__}; {args.nodes} processes, fan-out {args.fanout}")
    figures: dict[str, Any] = {}
    for kind in args.transports.split(","):
        if kind == "ipv8":
            python, versions = ipv8_python(Path(args.ipv8_venv))
            print(f"pyipv8 / ipv8-rust-tunnels: {versions}; chunk {args.chunk} B, window {args.window}")
            env = {"BENCH_CHUNK": str(args.chunk), "BENCH_WINDOW": str(args.window)}
        else:
            python, env = sys.executable, {}
        figures[kind] = report = measure(kind, python, args, env)
        print(f"{kind}: small-message round trip median {report['ping_median_ms']:.2f} ms, "
              f"p99 {report['ping_p99_ms']:.2f} ms")
        for size in args.sizes:
            r = report[f"{size:g}MB"]
            print(f"{kind}: {size:g} MB x {args.nodes} nodes x {args.fanout}: {r['throughput_mb_s']:.1f} MB/s "
                  f"aggregate ({r['wall_s']:.1f} s), {r['cpu_s_per_mb'] * 1000:.1f} ms CPU per MB, "
                  f"{r['failures']} failed" + (f", {r['resent_fraction']:.0%} of chunks resent"
                                               if "resent_fraction" in r else ""))
    if "tcp" in figures and "ipv8" in figures:
        tcp, ipv8 = figures["tcp"], figures["ipv8"]
        print(f"ratio tcp/ipv8: latency {ipv8['ping_median_ms'] / tcp['ping_median_ms']:.2f}x lower with tcp")
        for size in args.sizes:
            key = f"{size:g}MB"
            faster = tcp[key]["throughput_mb_s"] / ipv8[key]["throughput_mb_s"]
            print(f"ratio tcp/ipv8 at {key}: throughput {faster:.2f}x,"
                  f" CPU per MB {ipv8[key]['cpu_s_per_mb'] / tcp[key]['cpu_s_per_mb']:.2f}x lower with tcp")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
