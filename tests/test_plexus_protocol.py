"""Plexus: the aggregator, the floor(s x sf) quorum, checked senders (every refusal counted by reason), and end to
end in the simulator: traffic per round, late models, determinism."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import plexus
from plexus.protocol.epidemic import NotSending
from plexus.protocol.gossip import GossipModel
from plexus.protocol.messages import HEADER_BYTES
from plexus.protocol.plexus import AggregatedModel, PlexusNode, PlexusOptions, TrainedModel, quorum
from plexus.protocol.sampling import derive_sample
from plexus.protocol.view import PeerInfo
from plexus.sim.profiles import build_profiles
from protocol_stub import StubRuntime, sent_to

DIGITS_PARAMETERS = 4810
TRAINED_BYTES = HEADER_BYTES + 16 + 4 + 4 * DIGITS_PARAMETERS  # round, samples, count, floats
AGGREGATE_BYTES = HEADER_BYTES + 8 + 4 + 4 * DIGITS_PARAMETERS  # round, count, floats
IDS = [str(i).encode() for i in range(20)]


def run(tmp_path: Path, name: str, **options) -> plexus.metrics.results.Results:
    base = {"nodes": 30, "sample_size": 6, "rounds": 8, "eval_every": 2, "out": str(tmp_path / name)}
    base.update(options)
    return plexus.simulate(base)


def options(nodes: int = 20, **given: object) -> PlexusOptions:
    return PlexusOptions(local_steps=1, nodes=nodes, **given)  # type: ignore[arg-type]


def node_on(node_id: bytes, peers: list[PeerInfo], opts: PlexusOptions, parameters: int = 3) -> PlexusNode:
    return PlexusNode(StubRuntime(node_id, peers, parameters), opts)


def stub(node: PlexusNode) -> StubRuntime:
    assert isinstance(node.runtime, StubRuntime)
    return node.runtime


def test_aggregator_is_the_fastest_uploader_of_the_next_sample() -> None:
    ids = IDS[:12]
    bandwidth = {node: float(10 + int(node)) for node in ids}
    peers = [PeerInfo(n, bandwidth[n], 1.0) for n in ids]
    opts = options(12, sample_size=4, success_fraction=1.0)
    node = node_on(ids[0], peers, opts)
    for round_ in range(1, 6):
        following = derive_sample(ids, round_ + 1, 4)
        assert node.aggregator(round_) == max(following, key=lambda n: bandwidth[n])
    current = node_on(ids[0], peers, options(12, sample_size=4, success_fraction=1.0, aggregator_sample="current"))
    assert current.aggregator(3) == max(derive_sample(ids, 3, 4), key=lambda n: bandwidth[n])


def test_aggregator_ties_are_broken_by_hash_order() -> None:
    ids = IDS[:12]
    node = node_on(ids[0], [PeerInfo(n, 5.0, 5.0) for n in ids], options(12, sample_size=4, success_fraction=1.0))
    assert node.aggregator(2) == derive_sample(ids, 3, 4)[0]


def test_full_success_fraction_sends_two_models_per_participant_per_round(tmp_path: Path) -> None:
    nodes, s, rounds = 30, 6, 8
    results = run(tmp_path, "sf1", success_fraction=1.0, nodes=nodes, sample_size=s, rounds=rounds)
    ids = [str(i).encode() for i in range(nodes)]
    # the aggregator A_k is taken from S_{k+1}: members of S_k send s models to it (one fewer if A_k is itself
    # in S_k: a self-send costs no bandwidth), and it pushes the average to the s - 1 other members of S_{k+1}
    upload = build_profiles(nodes, seed=0).upload_bps  # the same seeded profiles the simulation draws
    peers = [PeerInfo(node_id, float(upload[i])) for i, node_id in enumerate(ids)]
    node = node_on(ids[0], peers, options(nodes, sample_size=s, success_fraction=1.0))
    trained = aggregates = 0
    for k in range(1, rounds + 1):
        trained += s - (node.aggregator(k) in derive_sample(ids, k, s))
        aggregates += s - 1
    assert results.summary["rounds_completed"] == rounds
    assert results.summary["bytes_total"] == trained * TRAINED_BYTES + aggregates * AGGREGATE_BYTES
    assert results.summary["messages_total"] == trained + aggregates
    assert "late_models_dropped" not in results.summary["counters"]
    # and the total is within header overhead of 2 x s x model size per round
    assert results.summary["bytes_total"] <= rounds * 2 * s * TRAINED_BYTES


def test_aggregator_averages_the_first_quorum_and_drops_later_models() -> None:
    opts = options(sample_size=5, success_fraction=0.6)  # quorum floor(3.0) = 3
    peers = [PeerInfo(n) for n in IDS]
    aggregator = node_on(IDS[0], peers, opts).aggregator(4)
    node = node_on(aggregator, peers, opts)
    senders = derive_sample(IDS, 4, 5)
    for sender, value in zip(senders, (1, 2, 6, 100, 200), strict=True):
        node.deliver(sender, TrainedModel(4, 1, np.full(3, float(value), dtype=np.float32)))
    runtime = stub(node)
    assert len(runtime.sink.globals) == 1
    round_, average = runtime.sink.globals[0]
    assert round_ == 4 and average.tolist() == [3.0, 3.0, 3.0]
    assert runtime.sink.counters == {"late_models_dropped": 2}
    assert not runtime.sink.rejections
    assert sent_to(runtime) == derive_sample(IDS, 5, 5)
    assert all(type(m) is AggregatedModel and m.round == 5 and m.params.tolist() == [3.0] * 3
               for _, m, _ in runtime.sent)


@pytest.mark.parametrize(
    "s, sf, expected",
    [(13, 0.8, 10), (10, 0.3, 3), (10, 0.7, 7), (100, 0.29, 29), (6, 1.0, 6), (5, 0.1, 1), (1, 0.01, 1), (3, 0.5, 1)],
)
def test_the_quorum_is_floor_of_s_times_sf_and_at_least_one(s: int, sf: float, expected: int) -> None:
    assert quorum(s, sf) == expected


def test_an_aggregator_of_13_at_sf_08_aggregates_on_the_tenth_model() -> None:
    opts = options(30, sample_size=13, success_fraction=0.8)
    ids = [str(i).encode() for i in range(30)]
    peers = [PeerInfo(n) for n in ids]
    node = node_on(ids[0], peers, opts)
    node = node_on(node.aggregator(2), peers, opts)
    for count, sender in enumerate(derive_sample(ids, 2, 13), start=1):
        node.deliver(sender, TrainedModel(2, 1, np.full(3, float(count), dtype=np.float32)))
        assert len(stub(node).sink.globals) == (count >= 10)
    assert stub(node).sink.globals[0][1].tolist() == [5.5] * 3  # the mean of 1..10
    assert stub(node).sink.counters["late_models_dropped"] == 3


def test_a_whole_run_at_sf_08_aggregates_10_of_13_models(tmp_path: Path) -> None:
    common = {"nodes": 30, "sample_size": 13, "rounds": 4, "eval_every": 2}
    floor = run(tmp_path, "sf08", success_fraction=0.8, **common)
    ten = run(tmp_path, "sf10of13", success_fraction=10 / 13, **common)
    eleven = run(tmp_path, "sf11of13", success_fraction=11 / 13, **common)
    # sf = 0.8 waits for floor(10.4) = 10 models, exactly like sf = 10/13: the same run, byte for byte
    assert (floor.directory / "metrics.csv").read_bytes() == (ten.directory / "metrics.csv").read_bytes()
    # waiting for an 11th model (the old ceil rule) makes every round longer
    assert eleven.summary["virtual_seconds"] > floor.summary["virtual_seconds"]


# ------------------------------------------------------------------------------------------------ checked senders
def aggregator_of_round(round_: int, opts: PlexusOptions | None = None) -> PlexusNode:
    opts = opts or options(sample_size=5, success_fraction=1.0)
    peers = [PeerInfo(n) for n in IDS]
    return node_on(node_on(IDS[0], peers, opts).aggregator(round_), peers, opts)


def state(node: PlexusNode) -> tuple[object, ...]:
    runtime = stub(node)
    return (repr(node._collected), node._aggregated_up_to, node.round, len(runtime.sent), len(runtime.trainings),
            len(runtime.sink.globals))


def test_a_model_sent_to_a_node_that_does_not_aggregate_its_round_is_refused() -> None:
    node = aggregator_of_round(4)
    member = derive_sample(IDS, 4, 5)[0]
    elsewhere = next(r for r in range(5, 50) if node.aggregator(r) != node.runtime.node_id)
    before = state(node)
    for round_ in (elsewhere, 0, -3):
        node.deliver(member, TrainedModel(round_, 1, np.ones(3, dtype=np.float32)))
    assert stub(node).sink.rejections == {"not_the_aggregator": 3}
    assert state(node) == before


def test_a_model_from_a_sender_outside_the_sample_is_refused() -> None:
    node = aggregator_of_round(4)
    outsider = next(n for n in IDS if n not in derive_sample(IDS, 4, 5))
    before = state(node)
    node.deliver(outsider, TrainedModel(4, 1, np.ones(3, dtype=np.float32)))
    node.deliver(b"stranger", TrainedModel(4, 1, np.ones(3, dtype=np.float32)))
    assert stub(node).sink.rejections == {"sender_not_in_sample": 2}
    assert state(node) == before


def test_a_model_with_the_wrong_parameter_count_is_refused() -> None:
    node = aggregator_of_round(4)
    before = state(node)
    node.deliver(derive_sample(IDS, 4, 5)[0], TrainedModel(4, 1, np.ones(4, dtype=np.float32)))
    assert stub(node).sink.rejections == {"wrong_parameter_count": 1}
    assert state(node) == before


def test_a_second_model_from_the_same_sender_is_refused_and_does_not_count_toward_the_quorum() -> None:
    node = aggregator_of_round(4)
    members = derive_sample(IDS, 4, 5)
    node.deliver(members[0], TrainedModel(4, 1, np.ones(3, dtype=np.float32)))
    before = state(node)
    for _ in range(4):  # as many as would fill the quorum of 5
        node.deliver(members[0], TrainedModel(4, 1, np.full(3, 9.0, dtype=np.float32)))
    assert stub(node).sink.rejections == {"duplicate_model": 4}
    assert state(node) == before and not stub(node).sink.globals
    for member in members[1:]:
        node.deliver(member, TrainedModel(4, 1, np.ones(3, dtype=np.float32)))
    assert stub(node).sink.globals[0][1].tolist() == [1.0] * 3  # the duplicates were not averaged in


def participant_of_round(round_: int) -> PlexusNode:
    opts = options(sample_size=5, success_fraction=1.0)
    return node_on(derive_sample(IDS, round_, 5)[0], [PeerInfo(n) for n in IDS], opts)


def test_an_aggregate_from_a_node_other_than_the_rounds_aggregator_is_refused() -> None:
    node = participant_of_round(3)
    impostor = next(n for n in IDS if n != node.aggregator(2))
    before = state(node)
    node.deliver(impostor, AggregatedModel(3, np.ones(3, dtype=np.float32)))
    # no round 0 exists, so nobody can send the aggregate of round 1
    node.deliver(node.aggregator(0), AggregatedModel(1, np.ones(3, dtype=np.float32)))
    assert stub(node).sink.rejections == {"not_the_aggregator": 2}
    assert state(node) == before


def test_an_aggregate_for_a_round_the_receiver_is_not_sampled_in_is_refused() -> None:
    node = participant_of_round(3)
    round_ = next(r for r in range(4, 50) if node.runtime.node_id not in derive_sample(IDS, r, 5))
    before = state(node)
    node.deliver(node.aggregator(round_ - 1), AggregatedModel(round_, np.ones(3, dtype=np.float32)))
    assert stub(node).sink.rejections == {"receiver_not_in_sample": 1}
    assert state(node) == before


def test_an_aggregate_with_the_wrong_parameter_count_is_refused() -> None:
    node = participant_of_round(3)
    before = state(node)
    node.deliver(node.aggregator(2), AggregatedModel(3, np.ones(30, dtype=np.float32)))
    assert stub(node).sink.rejections == {"wrong_parameter_count": 1}
    assert state(node) == before


def test_a_valid_aggregate_is_trained_and_the_result_sent_to_the_rounds_aggregator() -> None:
    node = participant_of_round(3)
    runtime = stub(node)
    node.deliver(node.aggregator(2), AggregatedModel(3, np.full(3, 2.0, dtype=np.float32)))
    assert node.round == 3 and len(runtime.trainings) == 1
    assert runtime.trainings[0][0].tolist() == [2.0] * 3 and runtime.trainings[0][1] == 1
    runtime.finish_training(add=1.0)
    (peer, message, _), = runtime.sent
    assert peer == node.aggregator(3)
    assert type(message) is TrainedModel and message.round == 3 and message.samples == 10
    assert message.params.tolist() == [3.0] * 3
    # the same aggregate again is ignored (counted, not refused: it is the aggregator's own retransmission)
    node.deliver(node.aggregator(2), AggregatedModel(3, np.full(3, 2.0, dtype=np.float32)))
    assert runtime.sink.counters["duplicate_aggregates_ignored"] == 1 and not runtime.sink.rejections


def test_a_forged_aggregate_of_an_old_round_is_refused_as_not_from_the_aggregator() -> None:
    node = participant_of_round(3)
    node.deliver(node.aggregator(2), AggregatedModel(3, np.full(3, 2.0, dtype=np.float32)))
    impostor = next(n for n in IDS if n != node.aggregator(1))
    node.deliver(impostor, AggregatedModel(2, np.ones(3, dtype=np.float32)))
    assert stub(node).sink.rejections == {"not_the_aggregator": 1}


def test_a_message_type_plexus_does_not_take_is_refused() -> None:
    node = participant_of_round(3)
    before = state(node)
    node.deliver(IDS[1], NotSending(3))
    node.deliver(IDS[1], GossipModel(1, np.ones(3, dtype=np.float32)))
    assert stub(node).sink.rejections == {"unexpected_message_type": 2}
    assert state(node) == before
    assert set(PlexusNode.message_types()) == {TrainedModel, AggregatedModel}


# ------------------------------------------------------------------------------------------------ end to end
def test_late_models_are_dropped_in_a_whole_run(tmp_path: Path) -> None:
    s, rounds = 10, 10
    results = run(tmp_path, "sf05", success_fraction=0.5, sample_size=s, rounds=rounds)
    counters = results.summary["counters"]
    dropped = counters.get("late_models_dropped", 0)
    abandoned = counters.get("stale_training_abandoned", 0)
    # every round, s - floor(s x sf) = 5 models miss the quorum: they arrive late and are dropped, or their
    # node was picked again and abandoned that training, or they are still in flight when the run stops
    assert dropped >= 1
    assert dropped + abandoned <= (s - 5) * rounds


def test_same_seed_gives_byte_identical_metrics_and_another_seed_differs(tmp_path: Path) -> None:
    a = run(tmp_path, "a", seed=3)
    b = run(tmp_path, "b", seed=3)
    c = run(tmp_path, "c", seed=4)
    text = [(r.directory / "metrics.csv").read_bytes() for r in (a, b, c)]
    assert text[0] == text[1]
    assert text[0] != text[2]


def test_results_folder_holds_config_metrics_summary_and_log(tmp_path: Path) -> None:
    results = run(tmp_path, "folder")
    folder = results.directory
    header = (folder / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("time_s", "round", "accuracy", "loss", "bytes_total", "train_seconds_total"):
        assert column in header
    summary = json.loads((folder / "summary.json").read_text())
    for key in ("algorithm", "task", "nodes", "seed", "rounds_completed", "virtual_seconds", "wall_seconds",
                "final_accuracy", "best_accuracy", "bytes_total", "train_seconds_total", "model_parameters",
                "events_processed"):
        assert key in summary, key
    assert summary["model_parameters"] == DIGITS_PARAMETERS
    assert (folder / "run.log").read_text().strip()
    # the resolved config reproduces the run
    again = plexus.simulate(folder / "config.toml", out=str(tmp_path / "again"))
    assert (folder / "metrics.csv").read_bytes() == (again.directory / "metrics.csv").read_bytes()


def test_training_time_follows_the_compute_model(tmp_path: Path) -> None:
    # training seconds summed over nodes = jobs x steps x batch x seconds per sample (x factor), so the
    # factor scales it exactly
    one = run(tmp_path, "f1", success_fraction=1.0, rounds=4)
    three = run(tmp_path, "f3", success_fraction=1.0, rounds=4, compute_factor=3.0)
    assert three.summary["train_seconds_total"] == pytest.approx(3 * one.summary["train_seconds_total"])
    assert three.summary["virtual_seconds"] > one.summary["virtual_seconds"]


def test_literal_algorithm_2_aggregator_from_the_current_sample_also_learns(tmp_path: Path) -> None:
    results = run(tmp_path, "current", aggregator_sample="current", rounds=30, eval_every=10)
    assert results.summary["final_accuracy"] > 0.6


def test_sample_count_weighting_runs(tmp_path: Path) -> None:
    results = run(tmp_path, "weighted", weighting="samples", partition="dirichlet:0.5", rounds=4)
    assert results.summary["rounds_completed"] == 4
    assert not math.isnan(results.summary["final_accuracy"])


def test_plexus_and_fedavg_reach_similar_accuracy_on_digits(tmp_path: Path) -> None:
    common = {"nodes": 100, "rounds": 80, "eval_every": 20}
    p = run(tmp_path, "plexus", **common)
    f = run(tmp_path, "fedavg", algorithm="fedavg", **common)
    assert p.summary["final_accuracy"] > 0.85 and f.summary["final_accuracy"] > 0.85
    assert abs(p.summary["best_accuracy"] - f.summary["best_accuracy"]) < 0.05


def test_fedavg_server_bandwidth_limits_rounds(tmp_path: Path) -> None:
    fast = run(tmp_path, "fast", algorithm="fedavg", rounds=3)
    slow = run(tmp_path, "slow", algorithm="fedavg", rounds=3, server_bandwidth=20_000.0)
    assert slow.summary["virtual_seconds"] > fast.summary["virtual_seconds"] + 3 * 6 * TRAINED_BYTES / 20_000 * 0.9
    assert np.isfinite(fast.summary["virtual_seconds"])
