"""The algorithm registry: what each shipped algorithm declares (traits, options, message types), lookups, and the
checks ``register`` makes. (Plug-in discovery and generated flags are covered in test_plugins.py.)"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from plexus.cli import main
from plexus.errors import ConfigError
from plexus.protocol.decentralized import NeighbourModel
from plexus.protocol.epidemic import NotSending
from plexus.protocol.fedavg import ClientUpdate, GlobalModel
from plexus.protocol.gossip import GossipModel, GossipOptions
from plexus.protocol.membership import Announce, Ping, Pong, ViewReply
from plexus.protocol.modest import ModestAggregate, ModestTrainedModel
from plexus.protocol.node import Node
from plexus.protocol.options import option
from plexus.protocol.plexus import AggregatedModel, PlexusNode, PlexusOptions, TrainedModel
from plexus.protocol.registry import algorithm, algorithms, all_option_specs, register

BUILTIN_TRAITS = {
    #            decentralized, evaluation, clock, uses_sample_size, uses_topology, server
    "plexus": (False, "global", "rounds", True, False, False),
    "fedavg": (False, "global", "rounds", True, False, True),
    "dpsgd": (True, "nodes", "rounds", False, True, False),
    "gossip": (True, "nodes", "periods", False, False, False),
    "el-local": (True, "nodes", "rounds", True, False, False),
    "el-oracle": (True, "nodes", "rounds", True, False, False),
}
FIELDS = ("decentralized", "evaluation", "clock", "uses_sample_size", "uses_topology", "server")


@pytest.mark.parametrize("name", sorted(BUILTIN_TRAITS))
def test_builtin_traits(name: str) -> None:
    spec = algorithm(name)
    assert spec.name == name and spec.description
    assert spec.traits.as_dict() == dict(zip(FIELDS, BUILTIN_TRAITS[name], strict=True))
    assert spec.module.startswith("plexus.protocol.")


def test_builtin_message_types() -> None:
    # static Plexus's two messages, then those of its MoDeST variant (membership = modest)
    assert set(algorithm("plexus").message_types()) == {TrainedModel, AggregatedModel, ModestTrainedModel,
                                                         ModestAggregate, Ping, Pong, Announce, ViewReply}
    assert set(algorithm("fedavg").message_types()) == {GlobalModel, ClientUpdate}
    assert algorithm("dpsgd").message_types() == [NeighbourModel]
    assert algorithm("el-oracle").message_types() == [NeighbourModel]
    assert set(algorithm("el-local").message_types()) == {NeighbourModel, NotSending}
    assert algorithm("gossip").message_types() == [GossipModel]


def test_the_gossip_period_is_its_round_timeout() -> None:
    spec = algorithm("gossip")
    assert spec.period is not None and spec.period(GossipOptions(local_steps=1, round_timeout=7.5)) == 7.5


def test_algorithms_returns_a_copy_with_every_builtin() -> None:
    table = algorithms()
    assert set(BUILTIN_TRAITS) <= set(table)
    table.pop("plexus")
    assert "plexus" in algorithms()


def test_an_unknown_algorithm_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown algorithm 'nope'; choose from .*dpsgd.*plexus.*--plugin"):
        algorithm("nope")


def test_option_specs_say_which_algorithms_use_each_option() -> None:
    table = all_option_specs()
    spec, users = table["sample_size"]
    assert set(users) >= {"plexus", "fedavg", "el-local", "el-oracle"} and "dpsgd" not in users
    assert spec.type is int and spec.default == 13 and spec.flag == "--sample-size" and spec.help
    assert table["topology"][1] == ["dpsgd"]
    assert table["round_timeout"][0].type is float and table["round_timeout"][1] == ["gossip"]
    assert table["aggregator_sample"][0].choices == ("next", "current")
    assert table["fanout"][0].default is None
    # inherited fields (the experiment's settings) are not protocol options
    assert not {"local_steps", "nodes", "seed"} & set(table)


@dataclass(frozen=True)
class _Options:
    local_steps: int = 1


def test_register_refuses_bad_declarations() -> None:
    before = set(algorithms())
    with pytest.raises(ValueError, match="lower-case letters"):
        register("Bad Name", description="", options=_Options)
    with pytest.raises(ValueError, match="evaluation must be one of"):
        register("test-x", description="", options=_Options, evaluation="everything")
    with pytest.raises(ValueError, match="clock must be one of"):
        register("test-x", description="", options=_Options, clock="ticks")
    with pytest.raises(ValueError, match="needs period"):
        register("test-x", description="", options=_Options, clock="periods")
    with pytest.raises(TypeError, match="options must be a dataclass"):
        register("test-x", description="", options=dict)
    with pytest.raises(TypeError, match="is not a plexus.protocol.node.Node subclass"):
        register("test-x", description="", options=_Options)(object)
    with pytest.raises(ValueError, match="'plexus' of .* is already registered by plexus.protocol.plexus"):
        register("plexus", description="", options=PlexusOptions)(type("Other", (Node,), {}))

    @dataclass(frozen=True)
    class Clashing:
        sample_size: float = option(0.5, "a float where plexus declares an int")

    with pytest.raises(TypeError, match="option sample_size is a float, but algorithm .* declares it as a int"):
        register("test-x", description="", options=Clashing)(type("ClashNode", (Node,), {}))
    assert set(algorithms()) == before
    assert algorithm("plexus").node is PlexusNode


def test_plexus_algorithms_lists_every_builtin_with_traits_options_and_messages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["algorithms", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(BUILTIN_TRAITS) <= set(rows)
    assert rows["gossip"]["traits"]["clock"] == "periods"
    assert {m["name"]: m["kind"] for m in rows["el-local"]["messages"]} == {"NeighbourModel": 5, "NotSending": 7}
    options = {o["name"]: o for o in rows["plexus"]["options"]}
    assert options["success_fraction"]["default"] == 0.8 and options["success_fraction"]["flag"] == "--success-fraction"
    assert main(["algorithms"]) == 0
    text = capsys.readouterr().out
    assert "el-local:" in text and "decentralized learning" in text and "with a server" in text
