"""Peers files: who takes part in a live run, where to reach them, and how the run starts.

::

    network = "digits-study-7"      # a run's name: nodes of different networks refuse each other
    start = "observer"              # "now", "observer" (wait for the observer's StartRun) or UNIX seconds

    [observer]                      # optional: the party that evaluates and stops the run
    id = "3b6a27bc..."              # 64 hex digits: its Ed25519 public key
    address = "127.0.0.1:9000"

    [server]                        # only for algorithms with a server (FedAvg): a participant without data
    id = "c5e478d5..."
    address = "127.0.0.1:9100"

    [[node]]                        # one table per node; its position is the node's index
    id = "9f86d081..."
    address = "127.0.0.1:9001"      # HOST:PORT, or [IPv6]:PORT
    upload_bps = 775825.0           # advertised capacities in bytes/s (optional; default inf)
    download_bps = 775825.0

A node's **index** (its position in the list) selects its shard of the partition and its seeded random stream,
as node ``index`` of a simulation: the i-th node of a live run trains on the same data as the i-th node of a
simulated run with the same config and seed. The node ids of the list form every node's initial view.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from plexus.errors import ConfigError
from plexus.live.keys import parse_node_id
from plexus.live.wire import parse_address
from plexus.protocol.view import PeerInfo


@dataclass(frozen=True)
class Peer:
    node_id: bytes
    host: str
    port: int
    upload_bps: float = math.inf
    download_bps: float = math.inf

    @property
    def info(self) -> PeerInfo:
        return PeerInfo(self.node_id, self.upload_bps, self.download_bps)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class PeersFile:
    network: str
    nodes: list[Peer]
    observer: Peer | None = None
    start: str | float = "now"
    server: Peer | None = None
    source: str = "peers file"
    _index: dict[bytes, int] = field(default_factory=dict, repr=False)

    def index_of(self, node_id: bytes) -> int | None:
        if not self._index:
            self._index = {peer.node_id: i for i, peer in enumerate(self.nodes)}
        return self._index.get(node_id)

    def addresses(self) -> dict[bytes, tuple[str, int]]:
        table = {peer.node_id: (peer.host, peer.port) for peer in self.nodes}
        for extra in (self.observer, self.server):
            if extra is not None:
                table[extra.node_id] = (extra.host, extra.port)
        return table

    def write(self, path: str | Path) -> None:
        document: dict[str, object] = {"network": self.network, "start": self.start}
        if self.observer is not None:
            document["observer"] = {"id": self.observer.node_id.hex(), "address": self.observer.address}
        if self.server is not None:
            document["server"] = _peer_table(self.server)
        document["node"] = [_peer_table(peer) for peer in self.nodes]
        Path(path).write_text(tomli_w.dumps(document), encoding="utf-8")


def _peer_table(peer: Peer) -> dict[str, object]:
    table: dict[str, object] = {"id": peer.node_id.hex(), "address": peer.address}
    if math.isfinite(peer.upload_bps):
        table["upload_bps"] = peer.upload_bps
    if math.isfinite(peer.download_bps):
        table["download_bps"] = peer.download_bps
    return table


def read_peers(path: str | Path) -> PeersFile:
    """Load and check a peers file; every problem is one ConfigError line naming the file and entry."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"peers file {path} does not exist")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"peers file {path} is not valid TOML: {error}") from None
    unknown = set(document) - {"network", "start", "observer", "server", "node"}
    if unknown:
        raise ConfigError(f"peers file {path}: unknown key {sorted(unknown)[0]!r} "
                          "(network, start, observer, server, node)")
    network = document.get("network", "plexus")
    if not isinstance(network, str) or not network:
        raise ConfigError(f"peers file {path}: network must be a non-empty string")
    start = document.get("start", "now")
    if isinstance(start, bool) or not (start in ("now", "observer") or isinstance(start, (int, float))):
        raise ConfigError(f"peers file {path}: start = {start!r}: use \"now\", \"observer\" or UNIX seconds")
    entries = document.get("node")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"peers file {path}: no [[node]] entries")
    nodes = [_peer(entry, f"peers file {path}, node {i}") for i, entry in enumerate(entries)]
    seen: dict[bytes, int] = {}
    for i, peer in enumerate(nodes):
        if peer.node_id in seen:
            raise ConfigError(f"peers file {path}: node {i} has the same id as node {seen[peer.node_id]}")
        seen[peer.node_id] = i
    observer = None
    if "observer" in document:
        observer = _peer(document["observer"], f"peers file {path}, [observer]")
        if observer.node_id in seen:
            raise ConfigError(f"peers file {path}: the observer's id is also node {seen[observer.node_id]}'s")
    server = None
    if "server" in document:
        server = _peer(document["server"], f"peers file {path}, [server]")
        if server.node_id in seen or (observer is not None and server.node_id == observer.node_id):
            raise ConfigError(f"peers file {path}: the server's id is also another participant's")
    if start == "observer" and observer is None:
        raise ConfigError(f"peers file {path}: start = \"observer\" needs an [observer] table")
    return PeersFile(network, nodes, observer, float(start) if isinstance(start, (int, float)) else start,
                     server=server, source=str(path))


def _peer(entry: object, where: str) -> Peer:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table with id and address")
    unknown = set(entry) - {"id", "address", "upload_bps", "download_bps"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if not isinstance(entry.get("id"), str):
        raise ConfigError(f"{where}: id (64 hex digits) is missing")
    node_id = parse_node_id(entry["id"], where)
    if not isinstance(entry.get("address"), str):
        raise ConfigError(f"{where}: address (HOST:PORT) is missing")
    try:
        host, port = parse_address(entry["address"], f"{where}: address")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    capacities = []
    for key in ("upload_bps", "download_bps"):
        value = entry.get(key, math.inf)
        if isinstance(value, str) and value.lower() in ("inf", "infinity"):
            value = math.inf
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{where}: {key} = {value!r}: must be a positive number of bytes/s (or \"inf\")")
        capacities.append(float(value))
    return Peer(node_id, host, port, capacities[0], capacities[1])
