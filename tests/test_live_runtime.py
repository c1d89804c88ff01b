"""The live runtime against the written contract (protocol/runtime.py): timers, sends and their futures, training
off the event loop, hostile payloads, protocol bugs, rejections logged once, stop conditions and saved state."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from live_harness import RawPeer
from plexus.errors import ConfigError
from plexus.live.keys import Identity
from plexus.live.runtime import LiveRuntime
from plexus.live.state import NodeState, load_state, save_state
from plexus.protocol.futures import Future
from plexus.protocol.messages import Message, Params, encode, message
from plexus.protocol.node import Node, handles
from plexus.protocol.registry import Algorithm, Traits
from plexus.protocol.runtime import PeerUnreachable, TrainResult, UnknownPeer
from plexus.protocol.view import PeerInfo, View

HOST = "127.0.0.1"
PARAMETERS = 8


@message(kind=65101)
class Note(Message):
    round: int
    text: str


@message(kind=65102)
class Model(Message):
    round: int
    params: Params


@message(kind=65103)
class Boom(Message):
    pass


class Recorder(Node):
    def __init__(self, runtime: Any, options: Any = None) -> None:
        super().__init__(runtime, options)
        self.got: list[tuple[bytes, Message]] = []
        self.started = False

    def start(self) -> None:
        self.started = True

    @handles(Note, Model)
    def on_message(self, sender: bytes, incoming: Message) -> None:
        self.got.append((sender, incoming))

    @handles(Boom)
    def on_boom(self, sender: bytes, incoming: Boom) -> None:
        raise RuntimeError("a protocol bug")


@dataclass(frozen=True)
class NoOptions:
    pass


SPEC = Algorithm("recorder", "test node", Recorder, NoOptions,
                 Traits(False, "global", "rounds", False, False, False))


class SlowTrainer:
    """Adds 1 to every parameter after ``seconds`` of (GIL-free) waiting; records the jobs it ran."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.ran: list[int] = []
        self.running = threading.Event()

    def run(self, job: Any) -> TrainResult:
        self.running.set()
        time.sleep(self.seconds)
        self.ran.append(job.job)
        return TrainResult(np.asarray(job.params, dtype=np.float32) + 1, 0.5, 10)


def make(identities: list[Identity], me: int, *, trainer: Any = None, rounds: int | None = None,
         state_dir: Path | None = None) -> LiveRuntime:
    identity = identities[me]
    initial = np.zeros(PARAMETERS, dtype=np.float32)
    initial.flags.writeable = False
    runtime = LiveRuntime(
        identity=identity, index=me, view=View([PeerInfo(i.node_id) for i in identities]), network="test",
        addresses={}, spec=SPEC, options=NoOptions(), initial=initial, local_samples=10,
        rng=np.random.default_rng(me), trainer=trainer or SlowTrainer(),
        executor=concurrent.futures.ThreadPoolExecutor(1), rounds=rounds, state_dir=state_dir,
    )
    runtime.attach(Recorder(runtime))
    return runtime


async def pair(**kwargs: Any) -> tuple[LiveRuntime, LiveRuntime]:
    identities = [Identity.generate(), Identity.generate()]
    a, b = make(identities, 0, **kwargs), make(identities, 1, **kwargs)
    for runtime in (a, b):
        await runtime.open(HOST, 0)
    for runtime in (a, b):
        for other in (a, b):
            runtime.transport.set_address(other.node_id, HOST, other.transport._server.sockets[0].getsockname()[1])
        runtime.begin()
    return a, b


async def close(*runtimes: LiveRuntime) -> None:
    for runtime in runtimes:
        runtime.request_stop("test over")
        await runtime.transport.close()
        runtime.executor.shutdown(wait=False, cancel_futures=True)


async def outcome(future: Future[Any], timeout: float = 10.0) -> Future[Any]:
    deadline = time.monotonic() + timeout
    while not future.done():
        assert time.monotonic() < deadline, "the future did not complete"
        await asyncio.sleep(0.005)
    return future


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine(), 60))


def test_timers_follow_asyncio_semantics_on_the_runtime_clock() -> None:
    async def scenario() -> None:
        a, b = await pair()
        fired: list[str] = []
        a.call_later(0.02, fired.append, "first")
        a.call_later(0.02, fired.append, "second")
        a.call_later(-5, fired.append, "negative")
        assert fired == []  # never synchronously
        cancelled = a.call_later(0.01, fired.append, "cancelled")
        cancelled.cancel()
        cancelled.cancel()
        assert cancelled.cancelled()
        before = a.now()
        timer = a.call_later(0.05, fired.append, "late")
        after = a.now()
        assert before + 0.05 - 1e-9 <= timer.when() <= after + 0.05 + 1e-9  # absolute, on the runtime's clock
        with pytest.raises(ValueError):
            a.call_later(math.nan, fired.append, "nan")
        await asyncio.sleep(0.1)
        assert fired == ["negative", "first", "second", "late"]
        await close(a, b)

    run(scenario)


def test_sends_resolve_on_delivery_with_the_authenticated_sender() -> None:
    async def scenario() -> None:
        a, b = await pair()
        order: list[str] = []
        transmission = a.send(b.node_id, Note(3, "hi"))
        transmission.sent.add_done_callback(lambda f: order.append("sent"))
        transmission.add_done_callback(lambda f: order.append("delivered"))
        await outcome(transmission)
        assert order == ["sent", "delivered"] and transmission.result() is None
        node = b.node
        assert isinstance(node, Recorder)
        (sender, got), = node.got
        assert sender == a.node_id and isinstance(got, Note) and (got.round, got.text) == (3, "hi")
        assert a.bytes_sent == Note(3, "hi").wire_size and a.messages_sent == 1
        # to oneself: a separate callback, after send returned
        mine = a.node
        assert isinstance(mine, Recorder)
        own = a.send(a.node_id, Note(1, "me"))
        assert mine.got == [] and not own.done()
        await outcome(own)
        assert mine.got[0][0] == a.node_id and own.sent.done()
        # to a stranger: fails at once
        stranger = a.send(Identity.generate().node_id, Note(1, "?"))
        assert stranger.done() and isinstance(stranger.exception(), UnknownPeer)
        await close(a, b)

    run(scenario)


def test_a_send_to_a_node_that_went_away_fails_with_peer_unreachable() -> None:
    async def scenario() -> None:
        a, b = await pair()
        await close(b)
        transmission = a.send(b.node_id, Note(1, "anyone?"))
        await outcome(transmission)
        assert isinstance(transmission.exception(), PeerUnreachable)
        assert sum(a.messages_lost.values()) == 1
        await close(a)

    run(scenario)


def test_training_runs_off_the_event_loop_so_the_node_keeps_answering() -> None:
    async def scenario() -> None:
        trainer = SlowTrainer(seconds=1.0)
        a, b = await pair(trainer=trainer)
        job = a.train(np.zeros(PARAMETERS, dtype=np.float32), 5)
        while not trainer.running.is_set():
            await asyncio.sleep(0.005)
        transmission = b.send(a.node_id, Note(1, "ping"))
        await outcome(transmission)
        assert not job.done()  # delivered while the 1 s job still runs: the loop was never blocked by training
        await outcome(job)
        assert np.array_equal(job.result().params, np.ones(PARAMETERS, dtype=np.float32))
        # a queued job that is cancelled never runs
        trainer.seconds = 0.2
        first = a.train(np.zeros(PARAMETERS, dtype=np.float32), 5)
        second = a.train(np.zeros(PARAMETERS, dtype=np.float32), 5)
        second.cancel()
        await outcome(first)
        await asyncio.sleep(0.3)
        assert trainer.ran == [0, 1] and second.cancelled()
        assert a.training_jobs == 2 and a.train_seconds > 1.0
        await close(a, b)

    run(scenario)


def test_hostile_payloads_are_refused_counted_and_never_reach_the_node() -> None:
    async def scenario() -> None:
        a, b = await pair()
        raw = RawPeer(Identity.generate())
        await raw.connect(HOST, b.transport._server.sockets[0].getsockname()[1], address="")
        nan = encode(Model(1, np.array([math.nan] * PARAMETERS, dtype=np.float32)))
        too_long = encode(Model(1, np.zeros(PARAMETERS * 100, dtype=np.float32)))
        unknown = b"PX\x02\xff\xfe"
        truncated = encode(Note(1, "hello"))[:-2]
        for payload in (nan, too_long, unknown, truncated):
            await raw.send(payload)
            _, status, reason = await raw.ack()
            assert status == 1 and reason
        await raw.send(encode(Note(2, "fine")))
        assert (await raw.ack())[1] == 0
        node = b.node
        assert isinstance(node, Recorder)
        assert [m.round for _, m in node.got] == [2]
        assert dict(b.metrics.rejections) == {"non_finite_values": 1, "oversized_message": 1,
                                               "unknown_message_kind": 1, "malformed_message": 1}
        raw.close()
        await close(a, b)

    run(scenario)


def test_rejections_are_counted_each_time_and_logged_once_per_peer_and_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        a, b = await pair()
        with caplog.at_level(logging.WARNING, logger="plexus.live"):
            for _ in range(3):
                b.metrics.rejected("not_in_sample", a.node_id)
            b.metrics.rejected("duplicate_model", a.node_id)
        assert b.metrics.rejections == {"not_in_sample": 3, "duplicate_model": 1}
        lines = [r.getMessage() for r in caplog.records if "refused a message" in r.getMessage()]
        assert len(lines) == 2
        await close(a, b)

    run(scenario)


def test_an_exception_escaping_a_handler_stops_the_node_as_a_protocol_bug() -> None:
    async def scenario() -> None:
        a, b = await pair()
        transmission = a.send(b.node_id, Boom())
        await outcome(transmission)
        await asyncio.wait_for(b.finished.wait(), 5)
        assert b.status == "failed" and "a protocol bug" in b.stop_reason
        later = a.send(b.node_id, Note(1, "still there?"))
        await outcome(later)
        assert isinstance(later.exception(), PeerUnreachable)
        await close(a, b)

    run(scenario)


def test_a_message_of_a_round_after_the_last_ends_the_nodes_run() -> None:
    async def scenario() -> None:
        a, b = await pair(rounds=3)
        await outcome(a.send(b.node_id, Note(3, "last round")))
        assert b.status == "running"
        await outcome(a.send(b.node_id, Note(4, "round 3 is over")))
        await asyncio.wait_for(b.finished.wait(), 5)
        assert b.status == "stopped" and b.clock_round == 3
        node = b.node
        assert isinstance(node, Recorder) and [m.round for _, m in node.got] == [3]
        await close(a, b)

    run(scenario)


def test_state_is_saved_atomically_and_read_back_with_checks(tmp_path: Path) -> None:
    identity = Identity.generate()
    view = [PeerInfo(identity.node_id, 10.0, math.inf), PeerInfo(b"\x01" * 32, 5.0, 5.0)]
    model = np.arange(PARAMETERS, dtype=np.float32)
    save_state(tmp_path, NodeState(identity.node_id, "net", "plexus", 7, view, 12.5, model, {"round": 7}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npy", "state.json"]
    state = load_state(tmp_path, PARAMETERS)
    assert state is not None and state.round == 7 and state.view == view and state.extra == {"round": 7}
    assert state.model is not None and np.array_equal(state.model, model) and not state.model.flags.writeable
    with pytest.raises(ConfigError, match="not a finite float32 vector of 9"):
        load_state(tmp_path, PARAMETERS + 1)
    (tmp_path / "state.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(ConfigError, match="damaged"):
        load_state(tmp_path, PARAMETERS)
    assert load_state(tmp_path / "absent", PARAMETERS) is None


def test_a_stopped_node_saves_its_state_and_a_new_runtime_resumes_from_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b = await pair(state_dir=None)
        identities = [a.identity, b.identity]
        await close(a, b)
        first = make(identities, 0, state_dir=tmp_path)
        await first.open(HOST, 0)
        first.begin()
        first.clock_round = 5
        first.last_model = np.full(PARAMETERS, 2.0, dtype=np.float32)
        first.request_stop("done")
        await first.finished.wait()
        await first.shutdown(grace=0)
        again = make(identities, 0, state_dir=tmp_path)
        await again.open(HOST, 0)
        state = again.load_saved_state()
        assert state is not None and state.round == 5
        again.begin(state=state)
        node = again.node
        assert isinstance(node, Recorder) and not node.started  # a global-model algorithm waits to be sampled
        assert again.clock_round == 5 and again.resumed_from is state
        await close(again)

    run(scenario)
