"""A live run's results folder, in the simulator's format (so ``plexus compare`` sets live and simulated runs side
by side), written through :class:`plexus.metrics.results.Results`.

What differs, and why: ``time_s`` in ``metrics.csv`` and ``virtual_seconds`` in ``summary.json`` are wall-clock
seconds since the run's origin (a live run has no other clock); ``train_seconds_total`` sums the nodes' measured
wall seconds of training; ``bytes_total`` and ``messages_total`` count protocol messages by their encoded size,
exactly as the simulator charges them (the transport's framing, signatures, handshakes and acknowledgements are in
``live.transport_bytes_sent``). ``summary.json`` adds ``runtime = "live"`` and a ``live`` table (network, every
node's final status, the observer's refusals). ``events.csv`` merges every node's and the observer's events by
time.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from plexus import __version__
from plexus.config import Config
from plexus.live.observer import ObserverService
from plexus.metrics.results import Results
from plexus.protocol.registry import Algorithm


def live_summary(
    config: Config,
    spec: Algorithm,
    observer: ObserverService,
    higher_is_better: bool,
    node_ids: list[bytes],
    notes: list[str],
    wall_seconds: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    metric = observer.metric
    rows = observer.rows
    values = [row[metric] for row in rows if not math.isnan(row[metric])]
    best = (max(values) if higher_is_better else min(values)) if values else math.nan
    finals = observer.finals
    counters: Counter[str] = Counter()
    rejections: Counter[str] = Counter()
    lost: Counter[str] = Counter()
    bytes_total = messages_total = 0
    train_seconds = 0.0
    jobs = 0
    transport_bytes = 0
    last_time = observer.stop_time if observer.stop_time is not None else observer.now()
    nodes: list[dict[str, Any]] = []
    labels = list(observer.members.values())
    for node_id, label in observer.members.items():
        final = finals.get(label)
        if final is None:
            latest = observer.totals.get(label, (0, 0, 0.0))
            bytes_total += latest[0]
            messages_total += latest[1]
            train_seconds += latest[2]
            nodes.append({"node": label, "id": node_id.hex(), "status": "no final report (crashed or killed)"})
            continue
        counters.update(final.get("counters", {}))
        rejections.update(final.get("rejections", {}))
        lost.update(final.get("messages_lost", {}))
        bytes_total += int(final.get("bytes_sent", 0))
        messages_total += int(final.get("messages_sent", 0))
        train_seconds += float(final.get("train_seconds", 0.0))
        jobs += int(final.get("training_jobs", 0))
        transport_bytes += int(final.get("transport_bytes_sent", 0))
        nodes.append({"node": label, "id": node_id.hex(), "status": final.get("status"),
                      "stop_reason": final.get("stop_reason"), "round": final.get("round"),
                      "resumed": final.get("resumed", False)})
    del labels
    # as in a simulation: the global rounds, or the mean of the rounds the nodes reported as completed
    rounds_completed = observer.current_round()
    summary: dict[str, Any] = {
        "algorithm": config.algorithm,
        "task": config.task,
        "nodes": config.nodes,
        "seed": config.seed,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "runtime": "live",
        "rounds_completed": rounds_completed,
        "virtual_seconds": last_time,
        "wall_seconds": wall_seconds,
        f"final_{metric}": rows[-1][metric] if rows else math.nan,
        f"best_{metric}": best,
        "final_loss": rows[-1]["loss"] if rows else math.nan,
        "bytes_total": bytes_total,
        "messages_total": messages_total,
        "train_seconds_total": train_seconds,
        "model_parameters": observer.parameters,
        "training_jobs": jobs,
        "wall_eval_seconds": observer.eval_wall_seconds,
        "counters": dict(sorted(counters.items())),
        "rejections": dict(sorted(rejections.items())),
        "messages_lost": dict(sorted(lost.items())),
        "traits": spec.traits.as_dict(),
        "stalled": observer.stalled_at is not None,
        "warnings": list(notes),
        "plexus_version": __version__,
        "live": {
            "network": observer.peers.network,
            "transport": "asyncio TCP, length-prefixed frames, Ed25519-signed (cryptography)",
            "transport_bytes_sent": transport_bytes,
            "stop_reason": observer.stop_reason,
            "observer_rejections": dict(sorted(observer.rejections.items())),
            "nodes": nodes,
            **(extra or {}),
        },
    }
    if observer.stalled_at is not None:
        summary["stalled_at"] = observer.stalled_at
    return summary


def write_results(out: Path, config: Config, summary: dict[str, Any], observer: ObserverService) -> Results:
    observer.flush()
    results = Results(out, summary)
    results.metrics = observer.rows
    results.rounds = sorted(observer.round_rows, key=lambda row: (row[2], row[0]))
    metric = observer.metric
    results.write(config.to_toml(), ["time_s", "round", metric, f"{metric}_std", "loss", "bytes_total",
                                     "messages_total", "train_seconds_total"])
    return results
