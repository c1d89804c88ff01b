"""Hostile input against a live Plexus node: malformed, oversized, forged, tampered, replayed, wrong-sender,
wrong-round, wrong-shape, wrong-type and NaN messages. The node keeps running, accepts none, counts each one under
the expected reason, and its memory stays bounded.

The quick test drives a node in this process; the slow one sends more than 10,000 messages to a ``plexus node``
process and watches its resident memory."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from live_harness import Fuzzer, RawPeer
from plexus.config import Config, resolve
from plexus.live.experiment import prepare
from plexus.live.keys import Identity, write_key
from plexus.live.node import build_runtime, live_options
from plexus.live.peers import Peer, PeersFile
from plexus.protocol.messages import encode
from plexus.protocol.plexus import PlexusNode, TrainedModel
from plexus.protocol.registry import algorithm
from plexus.protocol.sampling import derive_sample

HOST = "127.0.0.1"


def idle_target_and_members() -> list[Identity]:
    """Three identities whose first (the fuzzed node) is not in sample 1 of s = 2: with the other two absent it
    then never has work of its own, so any change of its state could only come from accepted fuzz."""
    while True:
        identities = [Identity.generate() for _ in range(3)]
        ids = sorted(i.node_id for i in identities)
        if identities[0].node_id not in derive_sample(ids, 1, 2):
            return identities


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def test_a_live_node_refuses_and_counts_every_hostile_message() -> None:
    async def scenario() -> None:
        config = resolve(Config(nodes=3, duration=600.0, protocol={"sample_size": 2}))
        spec = algorithm("plexus")
        experiment = prepare(config)
        identities = idle_target_and_members()
        dead = [_free_port(), _free_port()]  # the two other nodes do not exist: their addresses refuse
        peers = PeersFile("fuzz", [Peer(identities[0].node_id, HOST, 0),
                                   *(Peer(i.node_id, HOST, port) for i, port in zip(identities[1:], dead,
                                                                                     strict=True))])
        executor = concurrent.futures.ThreadPoolExecutor(1)
        runtime = build_runtime(config=config, spec=spec, options=live_options(config, spec, peers),
                                experiment=experiment, identity=identities[0], peers=peers,
                                trainer=experiment.trainer(), executor=executor)
        _, port = await runtime.open(HOST, 0)
        runtime.begin()
        node = runtime.node
        assert isinstance(node, PlexusNode)
        before = dict(runtime.metrics.rejections)
        fuzzer = Fuzzer(HOST, port, identities[0].node_id, identities[1:], [i.node_id for i in identities],
                        experiment.parameters, 2, "fuzz", seed=1)
        expected = await fuzzer.run(600)
        assert runtime.status == "running"
        counted = {k: v - before.get(k, 0) for k, v in runtime.metrics.rejections.items() if v - before.get(k, 0)}
        assert counted == expected
        assert len(expected) >= 12 and sum(expected.values()) == fuzzer.sent >= 600
        # nothing was accepted: no model collected, no round trained, no global model, no training
        assert runtime.metrics.global_rounds == 0 and node._collected == {} and node.round == 0
        assert runtime.training_jobs == 0
        # and it still takes a well-formed message from a member of its view
        raw = RawPeer(identities[1], "fuzz")
        await raw.connect(HOST, port)
        await raw.send(encode(TrainedModel(10**6, 1, experiment.initial)))
        assert (await raw.ack())[1] == 0
        raw.close()
        runtime.request_stop("test over")
        await runtime.transport.close()
        executor.shutdown(wait=False, cancel_futures=True)

    asyncio.run(asyncio.wait_for(scenario(), 120))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_a_node_process_survives_ten_thousand_hostile_messages_with_bounded_memory(tmp_path: Path) -> None:
    config = resolve(Config(nodes=3, duration=3600.0, protocol={"sample_size": 2}))
    identities = idle_target_and_members()
    ports = [_free_port() for _ in range(3)]
    peers = PeersFile("fuzz", [Peer(i.node_id, HOST, port) for i, port in zip(identities, ports, strict=True)])
    peers.write(tmp_path / "peers.toml")
    (tmp_path / "run.toml").write_text(config.to_toml())
    write_key(tmp_path / "node.key", identities[0])
    state = tmp_path / "state"
    process = subprocess.Popen(
        [sys.executable, "-m", "plexus.cli", "node", "--config", str(tmp_path / "run.toml"), "--key",
         str(tmp_path / "node.key"), "--listen", f"{HOST}:{ports[0]}", "--peers", str(tmp_path / "peers.toml"),
         "--state", str(state)],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "stderr.log", "wb"), env={**os.environ})
    try:
        async def scenario() -> tuple[dict[str, int], int, list[float]]:
            deadline = time.monotonic() + 120
            while True:  # wait until it listens
                try:
                    _, writer = await asyncio.open_connection(HOST, ports[0])
                    writer.close()
                    break
                except OSError:
                    assert process.poll() is None, (tmp_path / "stderr.log").read_text()
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            memory = [rss_mb(process.pid)]
            fuzzer = Fuzzer(HOST, ports[0], identities[0].node_id, identities[1:], [i.node_id for i in identities],
                            prepare(config).parameters, 2, "fuzz", seed=2)
            total = 0
            while total < 10_000:
                counts = await fuzzer.run(total + 1000)
                total = fuzzer.sent
                memory.append(rss_mb(process.pid))
                assert process.poll() is None
            raw = RawPeer(identities[1], "fuzz")
            await raw.connect(HOST, ports[0])
            await raw.send(encode(TrainedModel(10**6, 1, prepare(config).initial)))
            assert (await raw.ack())[1] == 0  # still answering (and refused by Plexus: counted)
            raw.close()
            return counts, fuzzer.sent, memory

        expected, sent, memory = asyncio.run(scenario())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    summary = json.loads((state / "node-summary.json").read_text())
    assert sent >= 10_000
    expected["not_the_aggregator"] = expected.get("not_the_aggregator", 0) + 1  # the final "still answering" one
    assert summary["rejections"] == expected
    assert summary["round"] == 0 and summary["training_jobs"] == 0 and summary["counters"] == {}
    assert max(memory) - memory[0] < 60, memory  # MB: bounded, whatever was announced or sent
    print(f"{sent} hostile messages, {len(expected)} reasons, resident memory {memory[0]:.0f} -> {max(memory):.0f} MB")
