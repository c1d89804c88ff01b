"""The live commands' input handling: keys, peers files and configs; every problem is one line and exit code 2."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from plexus.cli import main
from plexus.errors import ConfigError
from plexus.live.keys import Identity, read_key, write_key
from plexus.live.peers import Peer, PeersFile, read_peers


def test_keygen_writes_a_private_key_readable_only_by_its_owner_and_prints_the_id(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "node.key"
    assert main(["keygen", "--out", str(key)]) == 0
    printed = capsys.readouterr().out.strip()
    assert len(printed) == 64 and read_key(key).hex == printed
    assert (tmp_path / "node.key.pub").read_text().strip() == printed
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert main(["keygen", "--out", str(key)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["keygen", "--out", str(key), "--force"]) == 0


@pytest.mark.parametrize("content, message", [
    ("nonsense\n", "not a plexus key"),
    ("plexus-ed25519-private-key\nzz\n", "not hexadecimal"),
    ("plexus-ed25519-private-key\nabcd\n", "2 bytes, expected 32"),
])
def test_a_damaged_key_file_is_named_in_one_line(tmp_path: Path, content: str, message: str) -> None:
    key = tmp_path / "bad.key"
    key.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_key(key)


def peers_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "peers.toml"
    path.write_text(text)
    return path


def test_peers_files_are_checked_entry_by_entry(tmp_path: Path) -> None:
    ids = [Identity.generate().hex for _ in range(2)]
    good = (f'network = "n"\nstart = "now"\n[[node]]\nid = "{ids[0]}"\naddress = "127.0.0.1:9001"\n'
            f'upload_bps = 1000.0\n[[node]]\nid = "{ids[1]}"\naddress = "[::1]:9002"\n')
    peers = read_peers(peers_file(tmp_path, good))
    assert [p.port for p in peers.nodes] == [9001, 9002] and peers.nodes[1].host == "::1"
    assert peers.nodes[0].upload_bps == 1000.0 and peers.nodes[1].upload_bps == float("inf")
    peers.write(tmp_path / "again.toml")
    assert read_peers(tmp_path / "again.toml").nodes == peers.nodes
    cases = [
        (good.replace("9001", "x"), "node 0: address"),
        (good.replace(ids[1], ids[0]), "node 1 has the same id as node 0"),
        (good.replace(ids[0], "12ab"), "node 0: node id has 2 bytes"),
        (good.replace("upload_bps = 1000.0", "upload_bps = -1"), "upload_bps = -1"),
        (good.replace('start = "now"', 'start = "observer"'), "needs an [observer]"),
        (good + "colour = 1\n", "unknown key 'colour'"),
        ('network = "n"\n', "no [[node]] entries"),
    ]
    for text, message in cases:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            read_peers(peers_file(tmp_path, text))


def test_plexus_node_refuses_a_key_that_is_not_in_the_peers_file(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    members = [Identity.generate() for _ in range(2)]
    PeersFile("n", [Peer(m.node_id, "127.0.0.1", 9000 + i) for i, m in enumerate(members)]).write(
        tmp_path / "peers.toml")
    write_key(tmp_path / "outsider.key", Identity.generate())
    (tmp_path / "run.toml").write_text('[task]\nnodes = 2\n[protocol]\nsample_size = 2\n')
    args = ["node", "--config", str(tmp_path / "run.toml"), "--key", str(tmp_path / "outsider.key"),
            "--listen", "127.0.0.1:0", "--peers", str(tmp_path / "peers.toml")]
    assert main(args) == 2
    assert "is not listed" in capsys.readouterr().err
    (tmp_path / "run.toml").write_text('[task]\nnodes = 3\n[protocol]\nsample_size = 2\n')
    write_key(tmp_path / "member.key", members[0])
    args[4] = str(tmp_path / "member.key")
    assert main(args) == 2
    assert "nodes = 3 but" in capsys.readouterr().err
    args[6] = "nowhere"
    (tmp_path / "run.toml").write_text('[task]\nnodes = 2\n[protocol]\nsample_size = 2\n')
    assert main(args) == 2
    assert "--listen" in capsys.readouterr().err


def test_plexus_launch_runs_one_experiment_not_a_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "study.toml"
    config.write_text('[runs.a]\nalgorithm = "plexus"\n[runs.b]\nalgorithm = "fedavg"\n')
    assert main(["launch", "--config", str(config)]) == 2
    assert "one experiment" in capsys.readouterr().err


def test_simulator_only_settings_in_a_live_config_are_reported_as_having_no_effect() -> None:
    from plexus.config import config_from_mapping
    from plexus.live.launch import live_no_effect

    notes = live_no_effect(config_from_mapping({"executor": "pool", "stragglers": "7", "checkpoint_every": 60}))
    assert [note.split(" = ")[0] for note in notes] == ["stragglers", "executor", "checkpoint_every"]
    assert all("has no effect on a live run" in note for note in notes)
    assert live_no_effect(config_from_mapping({})) == []
