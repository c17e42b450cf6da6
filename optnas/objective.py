"""One trial: build the network, measure its cost, check budgets, train, return values.

Everything a trial learns goes into Optuna's storage as user attrs:

* ``arch``: the architecture in one line; ``arch_key``: its canonical key (equal for
  parameter sets that build the same network);
* ``params``, ``flops``, ``macs``, ``latency`` (ms, at ``latency_batch_size`` on the
  training device): its cost, set before training, so pruned and failed trials have them
  too (see :mod:`optnas.cost`);
* ``val_curve``: validation accuracy after each epoch so far (in single-objective studies
  also reported as intermediate values, which Optuna's pruners read);
  ``train_seconds``: wall time of the training, pruned or not (0 when not trained);
  ``epochs_trained``: epochs it trained (0 when not trained);
* ``training``: the recipe (epochs, batch size, learning rate) it was trained with;
  ``duplicate_of``: the earlier trial of the same architecture (this one was pruned
  untrained);
* ``fail_reason`` / ``pruned_reason``: why a trial failed or was pruned;
  ``fail_traceback``: where it failed (the error's traceback, its last 8,000 characters);
* ``worker``: ``host:pid`` of the process that ran it.

With an artifact store, a trial also uploads the diagram of its network
(``architecture.svg``) and, when among the ``keep_weights`` best, its trained weights
(``weights.pt``); see :mod:`optnas.artifacts`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
import torch

from optnas import artifacts, spaces
from optnas.cost import measure
from optnas.data import Dataset, DataSpec
from optnas.definition import TRAINED_BEFORE
from optnas.errors import interruption
from optnas.pool import LocalRunner, Runner, Slot
from optnas.pruners import SINGLE_OBJECTIVE_PRUNERS

__all__ = ["Objective", "recipe_of"]


class Objective:
    """The Optuna objective of a NAS study (see :func:`optnas.search`).

    Args:
        space: ``space(trial, spec) -> nn.Module``.
        data: The splits; only ``train`` and ``val`` are read.
        objectives: Names among accuracy, params, flops, macs, latency, in the order of
            the values.
        epochs: Epochs per child training.
        device: Where children train, when no ``runner`` is given.
        runner: Where children measure and train: a :class:`optnas.pool.DevicePool` to
            run several trials at once (``study.optimize(n_jobs=runner.size)``); by
            default one slot on ``device`` in this process.
        budgets: Largest allowed cost per name in ``optnas.cost.METRICS`` or ``latency``.
        seed: Base seed; trial ``n`` initializes and shuffles with a seed derived from it.
        train_kwargs: Further keyword arguments of :func:`optnas.train.fit`.
        latency_batch_size: Batch size at which latency is timed.
        dedup: Prune, untrained, a candidate whose architecture (equal ``arch_key``) an
            earlier trial trained with the same recipe; that trial's result stands.
        artifact_store: Where to upload each trial's diagram and the kept weights (an
            Optuna artifact store); None for neither.
        keep_weights: Keep the weights of a completed trial that is among this many best
            completed trials when it ends (see :func:`optnas.artifacts.keeps_weights`).
    """

    def __init__(
        self,
        space: Callable[..., Any],
        data: Dataset,
        objectives: Sequence[str],
        *,
        epochs: int,
        device: torch.device | None = None,
        runner: Runner | None = None,
        budgets: Mapping[str, float] | None = None,
        seed: int | None = None,
        train_kwargs: Mapping[str, Any] | None = None,
        latency_batch_size: int = 1,
        dedup: bool = True,
        artifact_store: Any = None,
        keep_weights: int = 0,
    ) -> None:
        self.space = space
        self.spec = data.spec
        self.objectives = tuple(objectives)
        self.epochs = epochs
        self.budgets = dict(budgets or {})
        self.seed = seed
        self.train_kwargs = dict(train_kwargs or {})
        self.latency_batch_size = latency_batch_size
        self.dedup = dedup
        # Trials still running from before (a crashed run's, on a storage without
        # heartbeats) may never end: dedup waits only for those started since.
        self.started = datetime.datetime.now()
        self.artifact_store = artifact_store
        self.keep_weights = keep_weights
        self.training = recipe(epochs, self.train_kwargs)
        # The splits are moved to the device once: every child reads the same tensors.
        self.runner = runner or LocalRunner(device or torch.device("cpu"), data.train, data.val)
        self.interrupted: KeyboardInterrupt | None = None  # by Ctrl-C or SIGTERM
        self.interrupted_trials: list[int] = []  # the numbers of the trials it cut short

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            if self.interrupted is not None:  # A trial Optuna started meanwhile.
                trial.study.stop()
                raise type(self.interrupted)
            return self._run(trial)
        except optuna.TrialPruned as pruned:
            trial.set_user_attr("pruned_reason", str(pruned) or "pruned by the pruner")
            raise
        except Exception as error:
            if self.interrupted is not None:  # Its pool process was stopped for it.
                self._record_interruption(trial, self.interrupted)
                raise type(self.interrupted) from error
            trial.set_user_attr("fail_reason", _reason(error))
            trial.set_user_attr("fail_traceback", _traceback_text(error))
            _untrained_unless_trained(trial)
            if self.unusable is not None:
                with contextlib.suppress(RuntimeError):  # Outside study.optimize: no loop.
                    trial.study.stop()  # This process's CUDA context is gone.
            raise
        except KeyboardInterrupt as stop:
            self._record_interruption(trial, stop)
            raise

    def interrupt(self, stop: KeyboardInterrupt) -> None:
        """End the search for ``stop`` (Ctrl-C, SIGTERM) where its trials run in other
        threads or processes: the runner stops the trainings under way now, and they and
        any trial started meanwhile are recorded as interrupted."""
        self.interrupted = stop
        self.runner.interrupt()

    def _record_interruption(self, trial: optuna.Trial, stop: KeyboardInterrupt) -> None:
        reason = f"interrupted ({interruption(stop)}); the study resumes by name"
        trial.set_user_attr("fail_reason", reason)
        _untrained_unless_trained(trial)
        self.interrupted_trials.append(trial.number)

    @property
    def unusable(self) -> BaseException | None:
        """The fatal error that left the runner unable to train, if any (a runner of
        one's own may not say: None)."""
        return getattr(self.runner, "unusable", None)

    def _run(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        seed = self._trial_seed(trial.number)
        with self.runner.slot() as slot:
            model = self._build(trial, seed)
            costs = self._measure(trial, model, slot)
            self._upload_diagram(trial, model)
            del model  # The slot holds it now (in this process or a worker).
            self._check_budgets(trial, costs)
            if "accuracy" not in self.objectives:  # No value would depend on its training.
                trial.set_user_attr("epochs_trained", 0)
                out = tuple(float(costs[name]) for name in self.objectives)
                return out if len(out) > 1 else out[0]
            self._claim(trial)  # or prune it as a duplicate
            result = self._train(trial, slot, seed)
            values = {"accuracy": result.accuracy, **costs}
            out = tuple(float(values[name]) for name in self.objectives)
            self._upload_weights(trial, slot, out)
        return out if len(out) > 1 else out[0]

    def _train(self, trial: optuna.Trial, slot: Slot, seed: int) -> Any:
        start = time.perf_counter()
        curve: list[float] = []
        try:
            return slot.fit(
                seed=seed,
                on_epoch=self._reporter(trial, curve),
                epochs=self.epochs,
                **self.train_kwargs,
            )
        finally:  # pruned and failed trainings took time too
            trial.set_user_attr("train_seconds", round(time.perf_counter() - start, 3))
            trial.set_user_attr("epochs_trained", len(curve))

    def _upload_diagram(self, trial: optuna.Trial, model: torch.nn.Module) -> None:
        if self.artifact_store is None:
            return
        from optnas.diagram import svg

        try:
            image = svg(model, self.spec.input_shape, title=trial.user_attrs["arch"])
        except Exception as error:  # A diagram is for people: it never fails a trial.
            _LOG.warning(f"Trial {trial.number}: no diagram ({type(error).__name__}: {error})")
            return
        artifacts.upload(
            self.artifact_store, trial, artifacts.DIAGRAM, image.encode(), mimetype="image/svg+xml"
        )

    def _upload_weights(self, trial: optuna.Trial, slot: Slot, values: Sequence[float]) -> None:
        if self.artifact_store is None or not artifacts.keeps_weights(
            trial.study, values, self.keep_weights
        ):
            return
        artifacts.upload(self.artifact_store, trial, artifacts.WEIGHTS, slot.weights())

    def _claim(self, trial: optuna.Trial) -> None:
        """Record the recipe ``trial`` trains with, which marks it as in training; with
        dedup, first prune it if its architecture was trained with this recipe already.

        A trial of the same architecture in training now (in another worker or slot) is
        waited for: its result stands for both, and two never train one network at once.
        The look and the mark are one step within a process.
        """
        while True:
            if self.interrupted is not None:
                raise type(self.interrupted)
            with _CLAIM_LOCK:
                original, in_training = self._original(trial) if self.dedup else (None, None)
                if original is not None:
                    self._skip_duplicate(trial, original)
                if in_training is None:
                    trial.set_user_attr("training", self.training)
                    return
            time.sleep(DEDUP_POLL_SECONDS)

    def _skip_duplicate(self, trial: optuna.Trial, original: optuna.trial.FrozenTrial) -> None:
        """Prune, untrained, an architecture the study already trained with this recipe.

        The earlier trial's result stands for both; recording the repeat as pruned keeps the
        Pareto front free of copies and tells samplers like TPE to look elsewhere.
        """
        curve = original.user_attrs.get("val_curve", [])
        trial.set_user_attr("duplicate_of", original.number)
        trial.set_user_attr("val_curve", curve)
        trial.set_user_attr("train_seconds", 0.0)
        trial.set_user_attr("epochs_trained", 0)
        outcome = (
            f"pruned after epoch {len(curve)}"
            if original.state == optuna.trial.TrialState.PRUNED
            else f"validation accuracy {curve[-1]:.4f}"
        )
        raise optuna.TrialPruned(
            f"duplicate of trial {original.number} ({outcome}); not trained again"
        )

    def _original(
        self, trial: optuna.Trial
    ) -> tuple[optuna.trial.FrozenTrial | None, optuna.trial.FrozenTrial | None]:
        """The first finished trial that trained this architecture with this recipe, and
        else one in training now by a live process (started since this objective was
        made: a crashed run's trial left RUNNING on a storage without heartbeats is not)."""
        key = trial.user_attrs["arch_key"]
        state = optuna.trial.TrialState
        in_training = None
        for other in trial.study.get_trials(
            deepcopy=False, states=(state.COMPLETE, state.PRUNED, state.RUNNING)
        ):
            attrs = other.user_attrs
            if (
                other.number == trial.number
                or attrs.get("arch_key") != key
                or recipe_of(other) != self.training  # recorded as its training starts
                or "duplicate_of" in attrs
                or not self._same_counts(trial, other)
            ):
                continue
            if other.state != state.RUNNING and attrs.get("val_curve"):  # trained
                return other, None
            started = other.datetime_start
            if other.state == state.RUNNING and started and started >= self.started:
                in_training = in_training or (other if _alive(other) else None)
        return None, in_training

    def _same_counts(self, trial: optuna.Trial, other: optuna.trial.FrozenTrial) -> bool:
        """Whether ``other`` has ``trial``'s counted costs among the objectives (params,
        flops, macs): networks of one architecture key may differ in parameters (nb201's
        dead edges hold weights), and then the cheaper one is another point of the Pareto
        front, trained in its own right. (Latency is measured, never equal: not compared.)"""
        return all(
            other.user_attrs.get(name) == trial.user_attrs.get(name)
            for name in self.objectives
            if name in _COUNTED
        )

    def _trial_seed(self, number: int) -> int:
        if self.seed is None:
            return int.from_bytes(os.urandom(4), "little")
        return (self.seed * 1_000_003 + number) % 2**31

    def _build(self, trial: optuna.Trial, seed: int) -> torch.nn.Module:
        # Trials of a pool build in threads of this process: one at a time, so that the
        # seeded global RNG initializes each network alone.
        with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.space(trial, self.spec)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(
                f"The space must return a torch.nn.Module, but returned {type(model).__name__}."
            )
        trial.set_user_attr("arch", spaces.describe(self.space, trial.params))
        trial.set_user_attr("arch_key", spaces.key(self.space, trial.params))
        return model

    def _measure(
        self, trial: optuna.Trial, model: torch.nn.Module, slot: Slot
    ) -> dict[str, float]:
        counts, out_shape, ms = slot.measure(model, self.spec.input_shape, self.latency_batch_size)
        expected = (1, self.spec.num_classes)
        if out_shape != expected:
            raise ValueError(
                f"The network's output for one sample has shape {out_shape}, "
                f"but {self.spec.num_classes} classes need {expected}."
            )
        costs = {**counts, "latency": round(ms, 4)}
        for key, value in costs.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("latency_batch_size", self.latency_batch_size)
        return costs

    def _check_budgets(self, trial: optuna.Trial, costs: Mapping[str, float]) -> None:
        over = []
        for key, limit in self.budgets.items():
            # Optuna's convention: a constraint value <= 0 is feasible.
            trial.set_constraint(key, costs[key] - limit)
            if costs[key] > limit:
                over.append(f"{key} {_plain(costs[key])} > {_plain(limit)}")
        if over:
            trial.set_user_attr("epochs_trained", 0)
            raise optuna.TrialPruned(f"over budget: {'; '.join(over)} (not trained)")

    def _reporter(self, trial: optuna.Trial, curve: list[float]) -> Callable[[int, float], None]:
        """The epoch callback: appends to ``curve``, records it, reports and prunes."""
        study = trial.study
        single = len(study.directions) == 1

        def on_epoch(epoch: int, accuracy: float) -> None:
            curve.append(accuracy)
            trial.set_user_attr("val_curve", curve)
            if single:
                trial.report(accuracy, epoch)
            if epoch + 1 >= self.epochs:  # Trained: pruning now would save nothing.
                return
            if single:
                prune = trial.should_prune()
            else:
                # Optuna refuses report/should_prune with several objectives; optnas's own
                # pruners read the curve and the costs from the trial's user attrs instead.
                pruner = study.pruner
                prune = not isinstance(
                    pruner, (optuna.pruners.NopPruner, *SINGLE_OBJECTIVE_PRUNERS)
                ) and pruner.prune(study, _frozen(study, trial.number))
            if prune:
                raise optuna.TrialPruned(
                    f"pruned by {type(study.pruner).__name__} after epoch {epoch + 1} of "
                    f"{self.epochs} at validation accuracy {accuracy:.4f}"
                )

        return on_epoch


# Reentrant: a sampler may count a candidate's costs (a build) inside the build that asks it.
_BUILD_LOCK = threading.RLock()
_CLAIM_LOCK = threading.Lock()
DEDUP_POLL_SECONDS = 1.0
"""How often a trial waiting for the same network's training elsewhere looks again."""


def _alive(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the process running ``trial`` (its ``worker``, "host:pid") still runs; one
    on another host is taken to (the storage's heartbeat fails its trial if it died)."""
    host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Someone else's process: it exists.
        return True
    return True


_LOG = optuna.logging.get_logger("optnas")
# Settings that change how fast a child trains, not what it learns.
_NOT_RECIPE = ("autotune", "compile")


def _untrained_unless_trained(trial: optuna.Trial) -> None:
    """``epochs_trained`` 0 for a trial that failed before its training began."""
    if "epochs_trained" not in trial.user_attrs:
        trial.set_user_attr("epochs_trained", 0)


def _plain(value: float) -> str:
    """``7,720`` for 7720 and 7720.0 alike, ``0.0185`` for 0.0185."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def _traceback_text(error: BaseException) -> str:
    """``error``'s traceback as Python prints it (from a pool's worker process where it
    failed there), its last :data:`_TRACEBACK_CHARS` characters."""
    text = getattr(error, "traceback_text", None) or "".join(traceback.format_exception(error))
    return text[-_TRACEBACK_CHARS:]


_TRACEBACK_CHARS = 8000
_COUNTED = ("params", "flops", "macs")  # costs counted exactly, the same run to run


def _reason(error: BaseException) -> str:
    """``"Type: message"``, its first :data:`_REASON_CHARS` characters (a message may hold
    a tensor's repr; MySQL keeps 64 KB of a user attr)."""
    text = f"{type(error).__name__}: {error}"
    if len(text) <= _REASON_CHARS:
        return text
    cut = len(text) - _REASON_CHARS
    return f"{text[:_REASON_CHARS]}… ({cut:,} characters cut; fail_traceback holds the end)"


_REASON_CHARS = 2000


def costs_before_training(
    space: Callable[..., Any], spec: DataSpec, names: Sequence[str]
) -> Callable[[Mapping[str, Any]], dict[str, float]] | None:
    """``costs(params)``: the ``names`` among params, flops and macs of the network that
    ``params`` build in ``space``, counted on the meta device (no memory, no training);
    None when ``names`` holds none of them. A sampler calls it for candidates it is about
    to choose between (see :class:`optnas.samplers.CostAwareSampler`'s ``n_exact``).

    Example:
        >>> from optnas.data import DataSpec
        >>> from optnas.spaces import mlp
        >>> costs = costs_before_training(mlp, DataSpec((13,), 3), ["accuracy", "params"])
        >>> costs({"n_layers": 1, "layer0_width": 32, "activation": "relu", "norm": "none",
        ...        "dropout": 0.0})
        {'params': 547}
    """
    wanted = [n for n in names if n in ("params", "flops", "macs")]
    if not wanted:
        return None

    def costs(params: Mapping[str, Any]) -> dict[str, float]:
        try:
            with _BUILD_LOCK, torch.random.fork_rng(devices=[]), torch.device("meta"):
                model = space(optuna.trial.FixedTrial(dict(params)), spec)
            if wanted == ["params"]:
                return {"params": sum(p.numel() for p in model.parameters())}
            return {n: v for n, v in measure(model, spec.input_shape).items() if n in wanted}
        except Exception:  # A candidate the space rejects: its costs stay predicted.
            return {}

    return costs


def recipe(epochs: int, train_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two trainings of one architecture interchangeable: the epochs and the
    training's keywords, not how fast they run (``autotune``, ``compile``).

    Example:
        >>> recipe(3, {"lr": 0.1, "autotune": True})
        {'epochs': 3, 'lr': 0.1}
    """
    return {"epochs": epochs, **{k: v for k, v in train_kwargs.items() if k not in _NOT_RECIPE}}


def recipe_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any] | None:
    """The training recipe recorded with ``trial`` (None if none), with the keys added since
    filled in as trials recorded without them were trained (``precise_bn`` 0).

    Example:
        >>> import optuna
        >>> trial = optuna.trial.create_trial(value=0.9, user_attrs={"training": {"epochs": 3}})
        >>> recipe_of(trial)
        {'precise_bn': 0, 'epochs': 3}
    """
    recorded = trial.user_attrs.get("training")
    return None if recorded is None else {**TRAINED_BEFORE, **recorded}


def _frozen(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """The running trial ``number`` as stored, user attrs included."""
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)
