"""The task registry: ``--task NAME`` looks names up here."""

from __future__ import annotations

from plexus.errors import ConfigError
from plexus.learning.tasks.base import Task
from plexus.learning.tasks.cifar10 import Cifar10Task
from plexus.learning.tasks.digits import DigitsTask
from plexus.learning.tasks.leaf import CelebaTask, FemnistTask, ShakespeareTask
from plexus.learning.tasks.mnist import MnistTask
from plexus.learning.tasks.movielens import MovieLensTask
from plexus.learning.tasks.synthetic import SyntheticIIDTask, SyntheticTask

TASKS: dict[str, type[Task]] = {
    DigitsTask.name: DigitsTask,
    FemnistTask.name: FemnistTask,
    CelebaTask.name: CelebaTask,
    ShakespeareTask.name: ShakespeareTask,
    MovieLensTask.name: MovieLensTask,
    SyntheticTask.name: SyntheticTask,
    SyntheticIIDTask.name: SyntheticIIDTask,
    Cifar10Task.name: Cifar10Task,
    MnistTask.name: MnistTask,
}


def task_class(name: str) -> type[Task]:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}") from None
