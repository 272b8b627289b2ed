"""Where sweep points and search trials run: in this process, or as Ray tasks.

An executor runs :class:`Task` s (a module-level function and its keyword arguments) and hands
back a :class:`TaskResult` per task as each one finishes. A task that raises is a failed
result carrying the error, never an exception in the caller, so one bad point does not stop
the others. Callers (:mod:`qnet.sweep`, :mod:`qnet.search`) write every result to their
output folder themselves, so checkpoints come back to ``--out`` even when the task ran on
another machine: a task returns its files as bytes.

- :class:`LocalExecutor` (the default) runs tasks one after another in this process; it needs
  no Ray.
- :class:`RayExecutor` runs up to ``workers`` tasks at a time as Ray tasks (``num_cpus=1``
  each), on a local Ray instance it starts (``ray.init(num_cpus=workers)``) or on an existing
  cluster (``address``, e.g. ``"auto"`` or ``"ray://head:10001"``). Ray and Optuna come with
  the ``distributed`` extra: ``pip install -c constraints.txt -e ".[distributed]"``.

:class:`ProgressBoard` keeps the finished / running / failed counts and the best result so
far, for a live table.
"""

from __future__ import annotations

import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qnet.errors import ConfigError, ToolNotFoundError

__all__ = [
    "EXECUTORS",
    "Task",
    "TaskResult",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "ProgressBoard",
    "make_executor",
]

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(**kwargs)`` must return a picklable dict."""

    key: str
    fn: Callable[..., dict[str, Any]]
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskResult:
    """A finished task: its value, or the error it raised (type, message and traceback)."""

    key: str
    value: dict[str, Any] | None
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        """Whether the task returned normally."""
        return self.error is None


def _describe(exc: BaseException) -> str:
    tail = "".join(traceback.format_exception(exc)[-3:]).strip()
    return f"{type(exc).__name__}: {exc}\n{tail}"


def _call(fn: Callable[..., dict[str, Any]], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Run a task body, turning an exception into a recorded error (runs on the worker)."""
    start = time.perf_counter()
    try:
        return {"value": fn(**kwargs), "error": None, "seconds": time.perf_counter() - start}
    except Exception as exc:  # a failing trial is data, not a crash of the whole run
        return {"value": None, "error": _describe(exc), "seconds": time.perf_counter() - start}


class Executor:
    """Base class: :meth:`submit` tasks, :meth:`wait_one` for the next finished one."""

    name = "base"
    workers = 1

    def submit(self, task: Task) -> None:
        """Queue ``task``."""
        raise NotImplementedError

    def wait_one(self) -> TaskResult:
        """Block until a submitted task finishes and return its result."""
        raise NotImplementedError

    @property
    def pending(self) -> int:
        """Submitted tasks whose result has not been returned yet."""
        raise NotImplementedError

    def running(self) -> list[str]:
        """Keys of the tasks running now (best effort)."""
        return []

    def close(self) -> None:
        """Release the executor's resources (a Ray instance it started)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Runs tasks one at a time, in submission order, in this process."""

    name = "local"

    def __init__(self) -> None:
        self._queue: deque[Task] = deque()
        self._current: str | None = None

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def running(self) -> list[str]:
        return [self._queue[0].key] if self._queue else []

    def wait_one(self) -> TaskResult:
        if not self._queue:
            raise ConfigError("wait_one() with no task submitted")
        task = self._queue.popleft()
        out = _call(task.fn, task.kwargs)
        return TaskResult(task.key, out["value"], out["error"], out["seconds"])


class RayExecutor(Executor):
    """Runs tasks as Ray tasks, at most ``workers`` at a time.

    Parameters
    ----------
    workers : int
        Tasks in flight (and CPUs of the local Ray instance, when this executor starts one).
    address : str, optional
        An existing cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``). Without it a
        local Ray instance with ``workers`` CPUs is started and stopped again by :meth:`close`.
    """

    name = "ray"

    def __init__(self, workers: int = 2, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ToolNotFoundError(
                "--executor ray needs Ray: pip install -c constraints.txt -e '.[distributed]'"
            ) from None
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"--workers must be a positive integer, got {workers!r}")
        self._ray = ray
        self.workers = workers
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if address:
                ray.init(address=address, **kwargs)
            else:  # "local": a new instance even when a 'ray start' cluster runs here
                ray.init(address="local", num_cpus=workers, **kwargs)
            self._started = True
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_call)
        self._waiting: deque[Task] = deque()
        self._flight: dict[Any, Task] = {}

    def _fill(self) -> None:
        while self._waiting and len(self._flight) < self.workers:
            task = self._waiting.popleft()
            ref = self._remote.remote(task.fn, dict(task.kwargs))
            self._flight[ref] = task

    def submit(self, task: Task) -> None:
        self._waiting.append(task)
        self._fill()

    @property
    def pending(self) -> int:
        return len(self._waiting) + len(self._flight)

    def running(self) -> list[str]:
        return [t.key for t in self._flight.values()]

    def wait_one(self) -> TaskResult:
        if not self._flight:
            raise ConfigError("wait_one() with no task submitted")
        done, _ = self._ray.wait(list(self._flight), num_returns=1)
        ref = done[0]
        task = self._flight.pop(ref)
        try:
            out = self._ray.get(ref)
        except Exception as exc:  # the worker died (out of memory, node lost, ...)
            out = {"value": None, "error": _describe(exc), "seconds": 0.0}
        self._fill()
        return TaskResult(task.key, out["value"], out["error"], out["seconds"])

    def close(self) -> None:
        for ref in list(self._flight):
            self._ray.cancel(ref, force=True)
        self._flight.clear()
        self._waiting.clear()
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False


def make_executor(name: str = "local", workers: int = 1, address: str | None = None) -> Executor:
    """``"local"`` (``workers`` must be 1, no Ray needed) or ``"ray"``."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r} is not known; use {' or '.join(EXECUTORS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {workers!r}")
    if name == "local":
        if workers != 1 or address:
            raise ConfigError(
                "the local executor runs one task at a time: --workers and --address need "
                "--executor ray"
            )
        return LocalExecutor()
    return RayExecutor(workers, address)


@dataclass
class ProgressBoard:
    """Counts of finished / running / failed tasks and the best value so far.

    ``better(a, b)`` says whether score ``a`` beats ``b`` (default: higher is better).
    """

    total: int
    cached: int = 0
    finished: int = 0
    failed: int = 0
    running: list[str] = field(default_factory=list)
    best_key: str | None = None
    best_score: float | None = None
    best_text: str = ""
    last_error: str = ""
    started: float = field(default_factory=time.monotonic)

    def record(self, key: str, score: float | None, text: str = "", cached: bool = False) -> None:
        """A task finished (or was found done): count it and keep the best."""
        if cached:
            self.cached += 1
        else:
            self.finished += 1
        if score is not None and (self.best_score is None or score > self.best_score):
            self.best_key, self.best_score, self.best_text = key, score, text

    def fail(self, key: str, error: str) -> None:
        """A task failed with ``error``."""
        self.failed += 1
        self.last_error = f"{key}: {error.splitlines()[0] if error else ''}"

    @property
    def done(self) -> int:
        """Tasks with a final state (cached, finished or failed)."""
        return self.cached + self.finished + self.failed

    def rich_table(self, title: str) -> Any:
        """A rich Table of the counts, the running tasks and the best so far."""
        from rich.table import Table

        table = Table(title=title, show_header=True)
        for col in ("done", "cached", "finished", "running", "failed", "best so far", "elapsed"):
            table.add_column(col, justify="left" if col == "best so far" else "right")
        table.add_row(
            f"{self.done}/{self.total}",
            str(self.cached),
            str(self.finished),
            ", ".join(self.running) or "-",
            str(self.failed),
            f"{self.best_key}: {self.best_text}" if self.best_key else "-",
            f"{time.monotonic() - self.started:.0f} s",
        )
        if self.last_error:
            table.caption = f"last failure: {self.last_error}"
        return table
