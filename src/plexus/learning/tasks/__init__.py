"""The task registry: ``--task NAME`` looks names up here."""

from __future__ import annotations

from plexus.errors import ConfigError
from plexus.learning.tasks.base import Task
from plexus.learning.tasks.digits import DigitsTask

TASKS: dict[str, type[Task]] = {
    DigitsTask.name: DigitsTask,
}


def task_class(name: str) -> type[Task]:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}") from None
