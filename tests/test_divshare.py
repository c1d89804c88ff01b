"""DivShare and Swift as the DivShare authors run them: the seeded global fragment partition, fresh recipient draws
per fragment, the shuffled queue flushed each iteration (DivShare) or never (Swift), per-coordinate averaging with
the newest copy per sender and fragment, checked fragments; an end-to-end asynchronous run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dl_harness import FakeWorld
from plexus.config import config_from_mapping
from plexus.errors import ConfigError
from plexus.protocol.asynchronous import average_pieces
from plexus.protocol.divshare import DivShareNode, DivShareOptions, Fragment, fragment_count, fragment_partition
from plexus.protocol.swift import SwiftModel, SwiftNode, SwiftOptions
from plexus.protocol.view import PeerInfo
from plexus.sim.simulation import run_simulation
from protocol_stub import StubRuntime

LAYOUT = (150, 6, 2400, 32, 1000, 10)  # tensors of a small conv net: sizes in flat-vector order


# ------------------------------------------------------------------------------------------------ fragments
@pytest.mark.parametrize(("fraction", "count"), [(0.1, 10), (0.3, 3), (0.5, 2), (0.6, 1), (1.0, 1), (0.01, 100),
                                                 (1 / 3, 3)])
def test_the_number_of_fragments_is_floor_of_one_over_omega(fraction: float, count: int) -> None:
    assert fragment_count(fraction) == count


@pytest.mark.parametrize("fragments", [1, 3, 10])
def test_the_partition_is_disjoint_covering_and_takes_about_1_over_f_of_every_tensor(fragments: int) -> None:
    parts = fragment_partition(LAYOUT, fragments, seed=7)
    assert len(parts) == fragments
    everything = np.concatenate(parts)
    assert np.array_equal(np.sort(everything), np.arange(sum(LAYOUT)))  # disjoint and covering
    offsets = np.cumsum((0,) + LAYOUT)
    for tensor, size in enumerate(LAYOUT):
        low, high = offsets[tensor], offsets[tensor + 1]
        per_fragment = [int(((part >= low) & (part < high)).sum()) for part in parts]
        # the first F-1 pieces hold floor(size / F) elements of the tensor, the last one the rest
        assert per_fragment[:-1] == [size // fragments] * (fragments - 1)
        assert per_fragment[-1] == size - (fragments - 1) * (size // fragments)


def test_the_partition_is_random_within_a_tensor_and_fixed_by_the_seed() -> None:
    parts = fragment_partition(LAYOUT, 10, seed=3)
    again = fragment_partition(LAYOUT, 10, seed=3)
    other = fragment_partition(LAYOUT, 10, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))
    first = parts[0][:LAYOUT[0] // 10]  # fragment 0's share of the first tensor: a random subset, not a block
    assert not np.array_equal(np.sort(first), np.arange(first.size))


class LayeredStub(StubRuntime):
    def parameter_layout(self) -> tuple[int, ...]:
        return LAYOUT


def peers(n: int) -> list[PeerInfo]:
    return [PeerInfo(f"n{i:02d}".encode()) for i in range(n)]


def divshare_node(n: int = 12, fraction: float = 0.1, degree: int = 3, concurrency: int = 1000,
                  seed: int = 0) -> tuple[LayeredStub, DivShareNode]:
    runtime = LayeredStub(b"n00", peers(n), parameters=sum(LAYOUT), seed=seed)
    options = DivShareOptions(local_steps=1, seed=5, nodes=n, fragment_fraction=fraction, degree=degree,
                              send_concurrency=concurrency)
    node = DivShareNode(runtime, options)
    node.start()
    return runtime, node


def test_every_node_derives_the_same_partition() -> None:
    _, a = divshare_node(seed=1)
    _, b = divshare_node(seed=2)  # another node's RNG: the partition comes from the experiment seed alone
    assert all(np.array_equal(x, y) for x, y in zip(a.indices, b.indices, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(a.indices, fragment_partition(LAYOUT, 10, 5), strict=True))


# ------------------------------------------------------------------------------------------------ sending
def test_each_fragment_goes_to_j_distinct_peers_drawn_afresh_in_shuffled_order() -> None:
    runtime, node = divshare_node(n=12, degree=3)
    runtime.finish_training(add=1.0)
    sent = [(peer, message) for peer, message, _ in runtime.sent]
    assert len(sent) == 10 * 3 and all(isinstance(m, Fragment) for _, m in sent)
    by_fragment: dict[int, list[bytes]] = {}
    for peer, message in sent:
        by_fragment.setdefault(message.fragment, []).append(peer)  # type: ignore[attr-defined]
    assert sorted(by_fragment) == list(range(10))
    for recipients in by_fragment.values():
        assert len(recipients) == len(set(recipients)) == 3 and b"n00" not in recipients
    assert len({tuple(sorted(r)) for r in by_fragment.values()}) > 1  # fresh draws, not one set for all
    order = [m.fragment for _, m in sent]  # type: ignore[attr-defined]
    assert order != sorted(order)  # the (peer, fragment) pairs are shuffled
    # the values are the trained model's at the fragment's coordinates, nothing else travels
    for _, message in sent:
        np.testing.assert_array_equal(message.params, np.ones(node.indices[message.fragment].size))  # type: ignore
    # over many iterations every peer is chosen about equally often
    for _ in range(200):
        runtime.finish_training(add=0.0)
    counts = Counter(peer for peer, _, _ in runtime.sent)
    assert len(counts) == 11 and max(counts.values()) < 1.3 * min(counts.values())


def test_divshare_flushes_what_is_unsent_when_the_next_iteration_queues() -> None:
    runtime, node = divshare_node(n=12, degree=3, concurrency=1)
    runtime.finish_training()
    assert len(runtime.sent) == 1 and node.queue.pending == 29  # one leaving, the rest waiting
    runtime.sent[0][2].mark_sent()  # the first one left: the second starts
    assert len(runtime.sent) == 2
    runtime.finish_training()  # next iteration: 28 unsent dropped, the one leaving aborted, 30 new queued
    assert runtime.sink.counters["messages_dropped_unsent"] == 28
    assert runtime.sink.counters["messages_aborted_leaving"] == 1
    assert runtime.sent[1][2].cancelled()
    assert node.queue.pending == 29 and len(runtime.sent) == 3


def test_swift_sends_the_whole_model_and_never_flushes() -> None:
    runtime = StubRuntime(b"n00", peers(8), parameters=4)
    node = SwiftNode(runtime, SwiftOptions(local_steps=1, nodes=8, degree=3, send_concurrency=1))
    node.start()
    runtime.finish_training(add=2.0)
    runtime.finish_training(add=1.0)
    assert len(runtime.sent) == 1 and node.queue.pending == 5  # 3 + 3 queued, one leaving, nothing dropped
    assert runtime.sink.counters["messages_still_queued"] == 3 and "messages_dropped_unsent" not in \
        runtime.sink.counters
    first = runtime.sent[0][1]
    assert isinstance(first, SwiftModel) and np.array_equal(first.params, np.full(4, 2.0))
    for _ in range(5):
        runtime.sent[-1][2].mark_sent()
    recipients = [peer for peer, _, _ in runtime.sent]
    assert len(set(recipients[:3])) == 3 and len(set(recipients[3:])) == 3 and b"n00" not in recipients


# ------------------------------------------------------------------------------------------------ averaging
def test_average_pieces_on_hand_made_vectors() -> None:
    own = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    pieces = [
        (np.array([0, 2]), np.array([3.0, 9.0])),       # covers 0 and 2
        (np.array([2, 3]), np.array([0.0, 8.0])),       # covers 2 and 3
        (None, np.array([5.0, 5.0, 5.0, 5.0])),         # a whole model covers everything
    ]
    # coordinate 0: (1 + 3 + 5) / 3; 1: (2 + 5) / 2; 2: (3 + 9 + 0 + 5) / 4; 3: (4 + 8 + 5) / 3
    expected = [3.0, 3.5, 17 / 4, 17 / 3]
    result = average_pieces(own, pieces)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-6)
    np.testing.assert_array_equal(average_pieces(own, []), own)


def test_the_disjoint_shortcut_gives_the_general_result() -> None:
    rng = np.random.default_rng(0)
    parts = fragment_partition((50, 30, 20), 4, seed=1)
    own = rng.normal(size=100).astype(np.float32)
    pieces = [(parts[f], rng.normal(size=parts[f].size).astype(np.float32)) for f in (0, 0, 2, 3, 0, 2)]
    np.testing.assert_allclose(average_pieces(own, pieces, disjoint=True), average_pieces(own, pieces), rtol=1e-6)
    whole = pieces + [(None, rng.normal(size=100).astype(np.float32))]
    np.testing.assert_allclose(average_pieces(own, whole, disjoint=True), average_pieces(own, whole), rtol=1e-6)
    np.testing.assert_array_equal(average_pieces(own, [], disjoint=True), own)


def test_a_node_averages_own_and_the_newest_fragment_per_sender_coordinate_by_coordinate() -> None:
    runtime, node = divshare_node(n=12, fraction=0.5, degree=3)  # two fragments
    f0, f1 = node.indices
    size = sum(LAYOUT)
    node.on_fragment(b"n01", Fragment(0, np.full(f0.size, 8.0, dtype=np.float32)))
    node.on_fragment(b"n01", Fragment(0, np.full(f0.size, 4.0, dtype=np.float32)))  # newer copy replaces it
    node.on_fragment(b"n02", Fragment(0, np.full(f0.size, 1.0, dtype=np.float32)))
    node.on_fragment(b"n02", Fragment(1, np.full(f1.size, 7.0, dtype=np.float32)))
    assert runtime.sink.counters["pieces_replaced"] == 1
    runtime.finish_training(add=1.0)  # trained model: all ones
    expected = np.ones(size)
    expected[f0] = (1.0 + 4.0 + 1.0) / 3  # own once, n01's newest, n02's
    expected[f1] = (1.0 + 7.0) / 2
    np.testing.assert_allclose(node.model, expected, rtol=1e-6)
    # the inbox was emptied: the next iteration averages only what arrives after
    runtime.finish_training(index=-1, add=1.0)
    np.testing.assert_allclose(node.model, expected + 1.0, rtol=1e-6)


def test_swift_averages_uniformly_with_the_newest_model_per_sender() -> None:
    runtime = StubRuntime(b"n00", peers(5), parameters=2)
    node = SwiftNode(runtime, SwiftOptions(local_steps=1, nodes=5, degree=2, send_concurrency=1))
    node.start()
    node.on_model(b"n01", SwiftModel(np.array([9.0, 9.0], dtype=np.float32)))
    node.on_model(b"n01", SwiftModel(np.array([3.0, 0.0], dtype=np.float32)))
    node.on_model(b"n03", SwiftModel(np.array([5.0, 6.0], dtype=np.float32)))
    runtime.finish_training(add=1.0)
    np.testing.assert_allclose(node.model, [(1 + 3 + 5) / 3, (1 + 0 + 6) / 3])


# ------------------------------------------------------------------------------------------------ hostile input
def test_bad_fragments_are_refused_and_counted_by_reason() -> None:
    runtime, node = divshare_node(n=12, fraction=0.5)
    f0 = node.indices[0]
    node.on_fragment(b"n01", Fragment(2, np.zeros(f0.size, dtype=np.float32)))
    node.on_fragment(b"n01", Fragment(-1, np.zeros(f0.size, dtype=np.float32)))
    node.on_fragment(b"n01", Fragment(0, np.zeros(f0.size + 1, dtype=np.float32)))
    node.on_fragment(b"n01", Fragment(1, np.zeros(f0.size - 7, dtype=np.float32)))
    node.on_fragment(b"stranger", Fragment(0, np.zeros(f0.size, dtype=np.float32)))
    node.on_fragment(b"n00", Fragment(0, np.zeros(f0.size, dtype=np.float32)))
    node.deliver(b"n01", SwiftModel(np.zeros(sum(LAYOUT), dtype=np.float32)))  # not a DivShare message
    assert dict(runtime.sink.rejections) == {"unknown_fragment": 2, "wrong_fragment_length": 2,
                                             "unknown_sender": 1, "own_message": 1, "unexpected_message_type": 1}
    runtime.finish_training(add=1.0)
    np.testing.assert_array_equal(node.model, np.ones(sum(LAYOUT)))  # nothing refused was averaged in


def test_swift_refuses_wrong_sizes_and_strangers() -> None:
    runtime = StubRuntime(b"n00", peers(5), parameters=2)
    node = SwiftNode(runtime, SwiftOptions(local_steps=1, nodes=5, degree=2, send_concurrency=1))
    node.on_model(b"n01", SwiftModel(np.zeros(3, dtype=np.float32)))
    node.on_model(b"zz", SwiftModel(np.zeros(2, dtype=np.float32)))
    assert dict(runtime.sink.rejections) == {"wrong_parameter_count": 1, "unknown_sender": 1}


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="degree = 6: must be at most nodes - 1 = 4"):
        run_simulation(config_from_mapping({"algorithm": "divshare", "nodes": 5, "rounds": 1}))
    with pytest.raises(ConfigError, match="fragment_fraction = 0: must be > 0"):
        run_simulation(config_from_mapping({"algorithm": "divshare", "nodes": 8, "fragment_fraction": 0}))
    with pytest.raises(ConfigError, match="fragment_fraction = 1.5: must be <= 1"):
        run_simulation(config_from_mapping({"algorithm": "divshare", "nodes": 8, "fragment_fraction": 1.5}))
    with pytest.raises(ConfigError, match="send_concurrency = 0"):
        run_simulation(config_from_mapping({"algorithm": "swift", "nodes": 8, "send_concurrency": 0}))


# ------------------------------------------------------------------------------------------------ asynchrony
def test_nodes_iterate_at_their_own_speed_without_waiting() -> None:
    options = DivShareOptions(local_steps=1, seed=0, nodes=6, fragment_fraction=0.5, degree=2, send_concurrency=1)
    world = FakeWorld(6, lambda runtime: DivShareNode(runtime, options),  # type: ignore[arg-type]
                      train_time=lambda i: 1.0 if i else 10.0, upload_bps=1e9, parameters=8)
    world.run(until=100.5)
    iterations = [len(world.rounds_of(i)) for i in range(6)]
    assert iterations[0] == 10 and iterations[1:] == [100] * 5  # the slow node holds nobody back


def test_end_to_end_asynchronous_runs_with_time_based_evaluation(tmp_path: Path) -> None:
    for algorithm in ("divshare", "swift"):
        options = {"fragment_fraction": 0.5} if algorithm == "divshare" else {}
        config = config_from_mapping({"algorithm": algorithm, "nodes": 8, "duration": 9.0, "eval_interval": 3.0,
                                      "degree": 3, "out": str(tmp_path / algorithm), "sample_seconds": 0.01,
                                      "local_steps": 1, "link_mbps": 60, "stragglers": 2, **options})
        results = run_simulation(config)
        times = [row["time_s"] for row in results.metrics]
        assert times == pytest.approx([3.0, 6.0, 9.0])
        rounds = [row["round"] for row in results.metrics]  # mean iterations per node: 0.2 s each
        assert rounds[0] in (14, 15) and rounds[-1] in (44, 45)
        assert results.summary["rejections"] == {} and results.summary["messages_lost"] == {}
        assert results.metrics[-1]["accuracy"] > results.metrics[0]["accuracy"]
        assert results.summary["traits"]["evaluation"] == "nodes" and results.summary["traits"]["decentralized"]
