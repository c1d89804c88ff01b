"""Flower's side of bench/flower_compare.py: FedAvg in Flower's simulation engine (Ray), on this package's data,
partition, model and trainer. Runs in the benchmark's own environment (bench/.flower-venv, which has
``flwr[simulation]`` and this package); prints one JSON line with the accuracy and wall time of every round.

Matching our FedAvg: the strategy draws each round's clients with the same seeded stream as our server
(``stream(seed, "node-rng", server index)`` over the sorted client ids), so the same 13 nodes train each round;
every selected client's result is aggregated (sf = 1) with the same uniform average (float64, then float32);
each client trains with :class:`~plexus.learning.trainer.LocalTrainer`, whose minibatches come from the stream
seeded by (seed, node, job number), and the strategy sends each client its node and job number. Flower's server
addresses clients by their (random) node ids, not by partition, so the node whose data a client trains travels in
the round's config; the computation is the same as our client's.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections import Counter
from typing import Any

import numpy as np


@functools.cache
def learning(settings_json: str) -> Any:
    """(Learning, Config) for these settings, built once per process (a Ray actor's, or the driver's)."""
    from plexus.config import config_from_mapping, resolve
    from plexus.sim.simulation import build_learning

    settings = json.loads(settings_json)
    config, learn = build_learning(resolve(config_from_mapping({**settings, "algorithm": "fedavg"})))
    return learn, config


def make_client(settings_json: str) -> Any:
    """A Flower client that trains the node the round's config names, with this package's trainer."""
    from flwr.client import NumPyClient

    from plexus.learning.trainer import TrainJob

    class Client(NumPyClient):
        def fit(self, parameters: list[np.ndarray], fit_config: dict[str, Any]) -> Any:
            import torch

            # a client is one Ray actor on one core (num_cpus = 1), like one of our pool's workers; the driver,
            # which evaluates the global model, keeps every core, like our simulator's evaluator
            torch.set_num_threads(1)
            learn, config = learning(settings_json)
            job = TrainJob(int(fit_config["node"]), int(fit_config["job"]),
                           np.asarray(parameters[0], dtype=np.float32), int(config.local_steps))
            output = learn.trainer.run(job)
            return [output.params], 1, {"node": int(fit_config["node"]), "loss": float(output.loss)}

    return Client().to_client()


def main() -> None:
    from flwr.client import ClientApp
    from flwr.common import Context, FitIns, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    from plexus.protocol.aggregation import average
    from plexus.rng import stream
    from plexus.sim.world import node_id_of

    settings_json = sys.argv[1]
    settings = json.loads(settings_json)
    nodes, sample, rounds, seed = settings["nodes"], settings["sample_size"], settings["rounds"], settings["seed"]
    learn, config = learning(settings_json)
    initial = learn.model.vector()

    def client_fn(context: Context) -> Any:
        return make_client(settings_json)

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()

    class MatchedFedAvg(FedAvg):
        def __init__(self) -> None:
            super().__init__(fraction_fit=0.0, fraction_evaluate=0.0, min_fit_clients=sample,
                             min_available_clients=nodes, min_evaluate_clients=0,
                             initial_parameters=ndarrays_to_parameters([initial]))
            # our FedAvg server is endpoint `nodes`; its clients are the data nodes' ids, sorted
            self.rng = stream(seed, "node-rng", nodes)
            self.ids = sorted(node_id_of(i) for i in range(nodes))
            self.jobs: Counter[int] = Counter()

        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            chosen = self.rng.choice(len(self.ids), size=sample, replace=False)
            members = [int(self.ids[i]) for i in sorted(chosen.tolist())]
            client_manager.wait_for(nodes)
            proxies = sorted(client_manager.all().values(), key=lambda proxy: proxy.cid)[:sample]
            instructions = []
            for proxy, node in zip(proxies, members, strict=True):
                instructions.append((proxy, FitIns(parameters, {"node": node, "job": self.jobs[node]})))
                self.jobs[node] += 1
            return instructions

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            if failures:
                raise RuntimeError(f"round {server_round}: {len(failures)} client failures: {failures[:1]}")
            ordered = sorted(results, key=lambda item: int(item[1].metrics["node"]))
            models = [parameters_to_ndarrays(fit.parameters)[0] for _, fit in ordered]
            return ndarrays_to_parameters([average(models)]), {}

        def evaluate(self, server_round: int, parameters: Any) -> Any:
            if server_round == 0:
                return None
            evaluation = learning(settings_json)[0].evaluator.evaluate(parameters_to_ndarrays(parameters)[0])
            rows.append({"round": server_round, "metric": evaluation.metric, "loss": evaluation.loss,
                         "wall": time.perf_counter() - started})
            return evaluation.loss, {"metric": evaluation.metric}

    def server_fn(context: Context) -> Any:
        return ServerAppComponents(strategy=MatchedFedAvg(), config=ServerConfig(num_rounds=rounds))

    run_simulation(server_app=ServerApp(server_fn=server_fn), client_app=ClientApp(client_fn=client_fn),
                   num_supernodes=nodes,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args":
                                   {"log_to_driver": False, "include_dashboard": False}},
                   verbose_logging=False)
    print(json.dumps({"rows": rows, "wall": time.perf_counter() - started}))


if __name__ == "__main__":
    import os
    from pathlib import Path

    # Ray's workers unpickle the client functions by module name: make this file importable as flower_side
    here = str(Path(__file__).resolve().parent)
    sys.path.insert(0, here)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    import flower_side  # type: ignore[import-not-found]

    flower_side.main()
