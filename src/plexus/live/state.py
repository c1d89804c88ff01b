"""A live node's saved state, so that a restarted node resumes instead of starting over.

The state folder of a node holds ``state.json`` (what the node believed: its round, its view with advertised
capacities, when it saved, which run and algorithm) and ``model.npy`` (its latest model: its own model for a
decentralized node, else the latest global model it trained from or produced). Both are written atomically (a
temporary file renamed over the old one), so a node killed at any moment leaves either the previous or the new
state, never half of one. ``model.npy`` is read with ``allow_pickle=False`` and checked for length and finite
values, like a model from the wire.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plexus.errors import ConfigError
from plexus.protocol.view import PeerInfo

STATE_FILE = "state.json"
MODEL_FILE = "model.npy"
STATE_VERSION = 1


@dataclass
class NodeState:
    node_id: bytes
    network: str
    algorithm: str
    round: int
    view: list[PeerInfo]
    saved_at: float
    model: np.ndarray | None = None
    extra: dict[str, Any] | None = None


def save_state(folder: str | Path, state: NodeState) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if state.model is not None:
        partial = folder / (MODEL_FILE + ".partial")
        with partial.open("wb") as handle:
            np.save(handle, np.ascontiguousarray(state.model, dtype=np.float32), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(folder / MODEL_FILE)
    document = {
        "version": STATE_VERSION,
        "node_id": state.node_id.hex(),
        "network": state.network,
        "algorithm": state.algorithm,
        "round": int(state.round),
        "saved_at": state.saved_at,
        "has_model": state.model is not None,
        "view": [{"id": p.node_id.hex(), "upload_bps": _number(p.upload_bps), "download_bps": _number(p.download_bps)}
                 for p in state.view],
        "extra": state.extra or {},
    }
    partial = folder / (STATE_FILE + ".partial")
    partial.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    partial.replace(folder / STATE_FILE)


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else "inf"


def load_state(folder: str | Path, parameters: int) -> NodeState | None:
    """The saved state in ``folder``, or None when there is none; a damaged state is a ConfigError naming it."""
    folder = Path(folder)
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("version") != STATE_VERSION:
            raise ValueError(f"version {document.get('version')!r}, expected {STATE_VERSION}")
        view = [PeerInfo(bytes.fromhex(p["id"]), float(p["upload_bps"]), float(p["download_bps"]))
                for p in document["view"]]
        state = NodeState(bytes.fromhex(document["node_id"]), str(document["network"]), str(document["algorithm"]),
                          int(document["round"]), view, float(document["saved_at"]),
                          extra=dict(document.get("extra") or {}))
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise ConfigError(f"saved state {path} is damaged ({error}); move it away to start afresh") from None
    if document.get("has_model"):
        model_path = folder / MODEL_FILE
        try:
            model = np.load(model_path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ConfigError(f"saved model {model_path} cannot be read ({error}); move the state folder away "
                              "to start afresh") from None
        if model.dtype != np.float32 or model.shape != (parameters,) or not np.isfinite(model).all():
            raise ConfigError(f"saved model {model_path} is not a finite float32 vector of {parameters} values "
                              f"(found {model.dtype} {model.shape})")
        model.flags.writeable = False
        state.model = model
    return state
