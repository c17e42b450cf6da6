"""NAS-Bench-201 as a tabular problem: each cell's training outcome is looked up, not trained.

A :class:`Table` holds the benchmark's records for one dataset (``cifar10``, ``cifar100``,
``ImageNet16-120``), read from a CSV in the format of ``shared/benchmarks/nb201/nb201.csv``:
the 12-epoch validation accuracy (the search signal of the paper's protocol), the 200-epoch
test accuracy (what is reported), the parameter count and the measured latency of every
cell. :func:`suggest` asks a trial for a cell with the same parameter names and choices as
the trainable space :data:`optnas.spaces.nb201`, so samplers see the same problem.

Example:
    >>> import optuna
    >>> from optnas.bench import nb201
    >>> table = nb201.Table.load()  # doctest: +SKIP
    >>> row = table.lookup(nb201.suggest(optuna.trial.FixedTrial(nb201.parse(
    ...     "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
    ...     "nor_conv_3x3~2|"))))  # doctest: +SKIP
    >>> table.val12[row]  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from optnas.spaces._nb201 import EDGES, OPS, canonical, parse

__all__ = [
    "BUDGET",
    "DATASETS",
    "EDGES",
    "OPS",
    "Run",
    "Table",
    "compare",
    "create_sampler",
    "default_table",
    "evaluate",
    "parse",
    "simulate",
    "suggest",
]

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
"""The datasets of the table."""

# Per dataset: search signal, reported accuracy, parameters (millions), latency (seconds).
_COLUMNS = {
    "cifar10": ("c10valid_val12", "c10_test200_fulltrain", "c10_params_M", "c10_latency_s"),
    "cifar100": ("c100_val12", "c100_test200", "c100_params_M", "c100_latency_s"),
    "ImageNet16-120": ("in16_val12", "in16_test200", "in16_params_M", "in16_latency_s"),
}
_TRAIN_TIME = "c10valid_train_time200_s"
BUDGET = 12_000.0
"""The paper's search budget in simulated seconds (about 110 evaluations on CIFAR-10)."""
EVALUATION_EPOCHS = 12
"""Epochs of the search signal; an evaluation costs this share of the 200-epoch training."""
_NAMES = tuple(f"{to}<-{src}" for to, src in EDGES)


def default_table() -> Path:
    """Where the table is looked for: ``$OPTNAS_NB201_TABLE``, else
    ``shared/benchmarks/nb201/nb201.csv`` beside the working directory or beside the
    checkout this package runs from.

    Example:
        >>> default_table().name
        'nb201.csv'
    """
    if os.environ.get("OPTNAS_NB201_TABLE"):
        return Path(os.environ["OPTNAS_NB201_TABLE"])
    relative = Path("shared", "benchmarks", "nb201", "nb201.csv")
    for root in (Path.cwd(), Path.cwd().parent, Path(__file__).resolve().parents[3]):
        if (root / relative).is_file():
            return root / relative
    return Path.cwd().parent / relative


def suggest(trial: optuna.trial.BaseTrial) -> dict[str, str]:
    """One operation per edge, under the names and choices of :data:`optnas.spaces.nb201`.

    Example:
        >>> import optuna
        >>> cell = suggest(optuna.trial.FixedTrial({n: "skip_connect" for n in
        ...     ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]}))
        >>> cell["3<-2"]
        'skip_connect'
    """
    return {name: trial.suggest_categorical(name, OPS) for name in _NAMES}


@dataclass(frozen=True)
class Table:
    """The benchmark's records of every cell for one dataset, as arrays by row.

    Attributes:
        dataset: One of :data:`DATASETS`.
        arch: The arch string of each row.
        val12: 12-epoch validation accuracy (%), the search signal.
        test200: 200-epoch test accuracy (%), the reported result.
        params: Parameter count.
        latency: Measured inference latency (ms).
        train_seconds: Seconds to train 200 epochs (the CIFAR-10-valid record, for all).
    """

    dataset: str
    arch: tuple[str, ...]
    val12: np.ndarray
    test200: np.ndarray
    params: np.ndarray
    latency: np.ndarray
    train_seconds: np.ndarray

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, dataset: str = "cifar10") -> Table:
        """Read the CSV at ``path`` (default: :func:`default_table`) for ``dataset``.

        Raises:
            ValueError: An unknown dataset, or a file without the table's columns.
            FileNotFoundError: No file at ``path``.
        """
        if dataset not in _COLUMNS:
            raise ValueError(f"Unknown dataset {dataset!r}; valid names: {', '.join(DATASETS)}.")
        path = Path(path) if path is not None else default_table()
        if not path.is_file():
            raise FileNotFoundError(
                f"No NAS-Bench-201 table at {path}; pass its path (the format of "
                "shared/benchmarks/nb201/nb201.csv) or set OPTNAS_NB201_TABLE."
            )
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        needed = ("arch_str", *_COLUMNS[dataset], _TRAIN_TIME)
        missing = [c for c in needed if rows and c not in rows[0]]
        if not rows or missing:
            raise ValueError(f"{path} is not a NAS-Bench-201 table: no column {missing[:1]}.")
        val, test, params, latency = _COLUMNS[dataset]

        def column(name: str, scale: float = 1.0) -> np.ndarray:
            return np.array([float(r[name]) for r in rows]) * scale

        return cls(
            dataset=dataset,
            arch=tuple(r["arch_str"] for r in rows),
            val12=column(val),
            test200=column(test),
            params=np.rint(column(params, 1e6)),
            latency=column(latency, 1e3),
            train_seconds=column(_TRAIN_TIME),
        )

    def __post_init__(self) -> None:
        index = {_ops_key(parse(a)): i for i, a in enumerate(self.arch)}
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.arch)

    def lookup(self, cell: Mapping[str, str]) -> int:
        """The row of ``cell`` (edge name -> operation).

        Raises:
            KeyError: The table has no such cell.
        """
        return self._index[_ops_key(cell)]  # type: ignore[attr-defined]


def _ops_key(cell: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(cell[name] for name in _NAMES)


@dataclass(frozen=True)
class Run:
    """One simulated search under the paper's protocol.

    Attributes:
        spent: Simulated seconds spent after each evaluation (increasing).
        reported: After each evaluation, the reported accuracy (``test200``) of the cell
            with the best search signal so far.
        sampling_seconds: Wall time the sampler took, in all.
    """

    spent: np.ndarray
    reported: np.ndarray
    sampling_seconds: float

    @property
    def result(self) -> float:
        """The reported accuracy at the end of the budget."""
        return float(self.reported[-1])

    def reported_at(self, seconds: float) -> float:
        """The reported accuracy once ``seconds`` of the budget were spent (NaN before the
        first evaluation finished).

        Example:
            >>> Run(np.array([10.0, 30.0]), np.array([90.0, 93.0]), 0.0).reported_at(20)
            90.0
        """
        done = int(np.searchsorted(self.spent, seconds, side="right"))
        return float(self.reported[done - 1]) if done else float("nan")


def evaluate(trial: optuna.trial.BaseTrial, table: Table, *, costs: bool = True) -> int:
    """Ask ``trial`` for a cell (:func:`suggest`) and return its row in ``table``; with
    ``costs``, the trial records the cell's parameter count as the user attribute
    ``params``, as optnas's objective records the built network's count before training.

    Example:
        >>> import optuna
        >>> table = Table.load()  # doctest: +SKIP
        >>> study = optuna.create_study(direction="maximize")  # doctest: +SKIP
        >>> trial = study.ask()  # doctest: +SKIP
        >>> row = evaluate(trial, table)  # doctest: +SKIP
        >>> trial.user_attrs["params"] == table.params[row]  # doctest: +SKIP
        True
    """
    row = table.lookup(suggest(trial))
    if costs:
        trial.set_user_attr("params", float(table.params[row]))
    return row


def simulate(
    sampler: optuna.samplers.BaseSampler,
    table: Table,
    *,
    budget: float = BUDGET,
    costs: bool = True,
) -> Run:
    """Search ``table`` with ``sampler`` under the paper's protocol.

    Each trial asks for a cell (:func:`evaluate`, which records its parameter count unless
    ``costs`` is false) and is told its 12-epoch validation accuracy; it costs 12/200 of
    the cell's 200-epoch training time. Trials are asked while less than ``budget``
    simulated seconds were spent (the evaluation that crosses the budget counts, as in the
    paper's code); a cell asked again costs again. The result is the 200-epoch test
    accuracy of the cell with the best validation accuracy.

    Example:
        >>> import optuna
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> table = Table.load()  # doctest: +SKIP
        >>> run = simulate(optuna.samplers.RandomSampler(seed=0), table)  # doctest: +SKIP
        >>> 90 < run.result < 94.4  # doctest: +SKIP
        True
    """
    if budget <= 0:
        raise ValueError(f"budget must be positive simulated seconds, but got {budget!r}.")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    spent, reported, sampling = [], [], 0.0
    total, best_signal, best_test = 0.0, -np.inf, float("nan")
    while total < budget:
        start = time.perf_counter()
        trial = study.ask()
        row = evaluate(trial, table, costs=costs)
        sampling += time.perf_counter() - start
        total += table.train_seconds[row] * EVALUATION_EPOCHS / 200
        if table.val12[row] > best_signal:
            best_signal, best_test = table.val12[row], float(table.test200[row])
        start = time.perf_counter()
        study.tell(trial, float(table.val12[row]))
        sampling += time.perf_counter() - start
        spent.append(total)
        reported.append(best_test)
    return Run(np.array(spent), np.array(reported), sampling)


def create_sampler(
    name: str | Mapping[str, Any], *, seed: int | None = None
) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` (a name, or a mapping of a name and its options, as
    :func:`optnas.samplers.create` takes) exactly as :func:`optnas.search` makes it for a
    one-objective search of the ``nb201`` space: given the space's canonical key (which
    cells are the same network); the parameter counts it may use are those the trials
    record (:func:`evaluate`), as in a search.

    Example:
        >>> type(create_sampler("evolution", seed=0)).__name__
        'RegularizedEvolutionSampler'
        >>> create_sampler({"name": "auto", "margin": 0.0}, seed=0).margin
        0.0
    """
    from optnas.samplers import create

    return create(name, directions=["maximize"], seed=seed, key=canonical)  # type: ignore[arg-type]


def compare(
    names: list[str],
    table: Table,
    *,
    runs: int,
    budget: float = BUDGET,
    seed: int = 0,
    costs: bool = True,
) -> dict[str, list[Run]]:
    """``runs`` simulated searches per sampler name, run ``r`` seeded ``seed + r``;
    ``costs``: trials record their parameter count (see :func:`evaluate`).

    Example:
        >>> table = Table.load()  # doctest: +SKIP
        >>> runs = compare(["random"], table, runs=3)  # doctest: +SKIP
        >>> len(runs["random"])  # doctest: +SKIP
        3
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, but got {runs!r}.")
    return {
        name: [
            simulate(create_sampler(name, seed=seed + r), table, budget=budget, costs=costs)
            for r in range(runs)
        ]
        for name in names
    }
