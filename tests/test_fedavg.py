"""FedAvg: the server's rounds and floor(s x sf) quorum, and its checked senders (every refusal counted by reason)."""

from __future__ import annotations

import numpy as np
import pytest

from plexus.protocol.epidemic import NotSending
from plexus.protocol.fedavg import SERVER_ID, ClientUpdate, FedAvgClient, FedAvgOptions, FedAvgServer, GlobalModel
from plexus.protocol.view import PeerInfo
from protocol_stub import StubRuntime, sent_to

CLIENTS = [str(i).encode() for i in range(10)]
PEERS = [PeerInfo(n) for n in CLIENTS]


def options(**given: object) -> FedAvgOptions:
    values = {"sample_size": 4, "success_fraction": 0.5, **given}
    return FedAvgOptions(local_steps=2, nodes=len(CLIENTS), **values)  # type: ignore[arg-type]


def server(start: bool = True, **given: object) -> tuple[FedAvgServer, StubRuntime]:
    runtime = StubRuntime(SERVER_ID, [*PEERS, PeerInfo(SERVER_ID)])
    node = FedAvgServer(runtime, options(**given))
    if start:
        node.start()
    return node, runtime


def ones(value: float = 1.0, n: int = 3) -> np.ndarray:
    return np.full(n, value, dtype=np.float32)


def state(node: FedAvgServer, runtime: StubRuntime) -> tuple[object, ...]:
    return (node.round, sorted(node._collected), len(runtime.sent), len(runtime.sink.globals))


def test_the_server_sends_the_model_to_s_distinct_clients_and_aggregates_at_the_floor_quorum() -> None:
    node, runtime = server(sample_size=5, success_fraction=0.7)  # floor(3.5) = 3
    assert node.quorum == 3
    chosen = sent_to(runtime)
    assert len(chosen) == len(set(chosen)) == 5 and set(chosen) == node._selected
    assert SERVER_ID not in chosen
    assert all(type(m) is GlobalModel and m.round == 1 for _, m, _ in runtime.sent)
    for value, client in zip((1.0, 2.0, 6.0), chosen, strict=False):
        node.deliver(client, ClientUpdate(1, 5, ones(value)))
    assert [(r, p.tolist()) for r, p in runtime.sink.globals] == [(1, [3.0] * 3)]
    assert node.round == 2 and len(runtime.sent) == 10
    # the remaining selected clients of round 1 are late
    node.deliver(chosen[3], ClientUpdate(1, 5, ones()))
    assert runtime.sink.counters == {"late_models_dropped": 1} and not runtime.sink.rejections


def test_an_update_from_a_client_the_server_did_not_select_is_refused() -> None:
    node, runtime = server()
    outsider = next(c for c in CLIENTS if c not in node._selected)
    before = state(node, runtime)
    node.deliver(outsider, ClientUpdate(1, 5, ones()))
    node.deliver(b"stranger", ClientUpdate(1, 5, ones()))
    assert runtime.sink.rejections == {"sender_not_selected": 2}
    assert state(node, runtime) == before


def test_a_second_update_from_the_same_client_is_refused() -> None:
    node, runtime = server(success_fraction=1.0)
    client = sent_to(runtime)[0]
    node.deliver(client, ClientUpdate(1, 5, ones()))
    before = state(node, runtime)
    for _ in range(3):
        node.deliver(client, ClientUpdate(1, 5, ones(50.0)))
    assert runtime.sink.rejections == {"duplicate_model": 3}
    assert state(node, runtime) == before and not runtime.sink.globals


def test_an_update_with_the_wrong_parameter_count_is_refused() -> None:
    node, runtime = server()
    before = state(node, runtime)
    node.deliver(sent_to(runtime)[0], ClientUpdate(1, 5, ones(n=4)))
    assert runtime.sink.rejections == {"wrong_parameter_count": 1}
    assert state(node, runtime) == before


def test_an_update_for_a_future_round_is_refused() -> None:
    node, runtime = server()
    before = state(node, runtime)
    node.deliver(sent_to(runtime)[0], ClientUpdate(2, 5, ones()))
    assert runtime.sink.rejections == {"future_round": 1}
    assert state(node, runtime) == before


def test_the_server_refuses_message_types_it_does_not_take() -> None:
    node, runtime = server()
    before = state(node, runtime)
    node.deliver(sent_to(runtime)[0], GlobalModel(1, ones()))
    node.deliver(sent_to(runtime)[0], NotSending(1))
    assert runtime.sink.rejections == {"unexpected_message_type": 2}
    assert state(node, runtime) == before


def client() -> tuple[FedAvgClient, StubRuntime]:
    runtime = StubRuntime(CLIENTS[3], PEERS)
    return FedAvgClient(runtime, options()), runtime


def test_a_client_trains_the_servers_model_and_replies_to_the_server() -> None:
    node, runtime = client()
    node.deliver(SERVER_ID, GlobalModel(4, ones(2.0)))
    assert len(runtime.trainings) == 1 and runtime.trainings[0][1] == 2
    runtime.finish_training(add=0.5)
    (peer, message, _), = runtime.sent
    assert peer == SERVER_ID and type(message) is ClientUpdate
    assert (message.round, message.samples, message.params.tolist()) == (4, 10, [2.5] * 3)


def test_a_global_model_from_anyone_but_the_server_is_refused() -> None:
    node, runtime = client()
    node.deliver(CLIENTS[0], GlobalModel(1, ones()))
    node.deliver(b"stranger", GlobalModel(1, ones()))
    assert runtime.sink.rejections == {"not_the_server": 2}
    assert not runtime.trainings and not runtime.sent


def test_a_client_refuses_message_types_it_does_not_take() -> None:
    node, runtime = client()
    node.deliver(SERVER_ID, ClientUpdate(1, 5, ones()))
    assert runtime.sink.rejections == {"unexpected_message_type": 1}
    assert not runtime.trainings


@pytest.mark.parametrize("s, sf, expected", [(13, 0.8, 10), (10, 0.3, 3), (4, 0.1, 1)])
def test_fedavg_uses_the_same_floor_quorum_as_plexus(s: int, sf: float, expected: int) -> None:
    node, _ = server(start=False, sample_size=s, success_fraction=sf)
    assert node.quorum == expected
