"""Where children train: in this process on one device, or in a pool of worker processes.

A trial takes a *slot* for its whole life: it ships the network it built to the slot, which
measures its cost on the slot's device, then trains it there, reporting each epoch back so
that the trial (in the parent, where Optuna's storage is) can report and prune. A
:class:`LocalRunner` is one slot in this process. A :class:`DevicePool` runs
``trials_per_device`` worker processes per device, each with the training and validation
splits resident on its device, so that several small children keep one GPU busy.

A child that fails (CUDA out of memory, divergence, a crash of its process) fails its trial
alone: the error travels back to the trial, the slot frees its memory (or is restarted) and
takes the next trial.
"""

from __future__ import annotations

import contextlib
import gc
import io
import multiprocessing
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import optuna
import torch
from torch import nn

from optnas import cost
from optnas.artifacts import state_bytes
from optnas.train import Split, TrainResult, fit, to_device

__all__ = [
    "DevicePool",
    "LocalRunner",
    "Measurement",
    "Runner",
    "Slot",
    "WorkerDiedError",
    "is_fatal",
    "default_trials_per_device",
]

Measurement = tuple[dict[str, int], tuple[int, ...], float]
"""``(counts, output_shape, latency_ms)`` of a network, see :meth:`Slot.measure`."""


_T = TypeVar("_T")


class WorkerDiedError(RuntimeError):
    """A pool's worker process ended while it held a trial."""


class Slot(Protocol):
    """Where one trial measures and trains its network."""

    def measure(
        self, model: nn.Module, input_shape: tuple[int, ...], latency_batch_size: int
    ) -> Measurement:
        """Take ``model``; return its counts, its output shape for one sample and its
        latency (ms) on this slot's device."""
        ...

    def fit(
        self, *, seed: int, on_epoch: Callable[[int, float], None], **kwargs: Any
    ) -> TrainResult:
        """Train the network last measured; see :func:`optnas.train.fit`."""
        ...

    def weights(self) -> bytes:
        """The state dict of the network trained last, on the CPU, as ``torch.save`` bytes
        (load them with ``torch.load(..., weights_only=True)``)."""
        ...


class Runner(Protocol):
    """Hands out slots: :class:`LocalRunner` or :class:`DevicePool`."""

    size: int
    unusable: BaseException | None  # A fatal error that left it unable to train.

    def slot(self) -> contextlib.AbstractContextManager[Slot]:
        """A free slot, held until the ``with`` block ends."""
        ...

    def interrupt(self) -> None:
        """Stop the trainings under way at once (Ctrl-C): each fails in its trial."""
        ...

    def close(self) -> None:
        """Release the slots' processes and memory."""
        ...


def default_trials_per_device(devices: Sequence[torch.device]) -> int:
    """Children per device when not given: 1 on CPU (a child uses every core); on GPUs,
    one per CPU core per GPU (a worker process needs a core to launch kernels), at most 8
    (the aggregate throughput levels off there, see ``studies/gpu_throughput.py``).

    Example:
        >>> import torch
        >>> default_trials_per_device([torch.device("cpu")])
        1
    """
    if not devices or any(d.type != "cuda" for d in devices):
        return 1
    return max(1, min(8, cpu_cores() // len(devices)))


def cpu_cores() -> int:
    """The CPU cores this process may run on (a container's share, not the host's count).

    Example:
        >>> cpu_cores() >= 1
        True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _measure_on(
    model: nn.Module, device: torch.device, input_shape: tuple[int, ...], batch_size: int
) -> tuple[nn.Module, Measurement]:
    """``model`` moved to ``device`` and its :data:`Measurement` there."""
    model = model.to(device)
    counts, out = cost.measure_forward(model, input_shape)
    ms = cost.latency(model, input_shape, batch_size=batch_size, device=device)
    return model, (counts, tuple(out.shape), ms)


def _seeded_fit(
    model: nn.Module, train: Split, val: Split, device: torch.device, seed: int, **kwargs: Any
) -> TrainResult:
    """:func:`optnas.train.fit` with the global RNGs (dropout) seeded by ``seed`` and
    restored afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return fit(model, train, val, device=device, seed=seed, **kwargs)


class LocalRunner:
    """One slot, in this process, on ``device``; the splits are moved there once.

    Example:
        >>> import torch
        >>> x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
        >>> runner = LocalRunner(torch.device("cpu"), (x, y), (x, y))
        >>> with runner.slot() as slot:
        ...     counts, out_shape, ms = slot.measure(torch.nn.Linear(4, 2), (4,), 1)
        ...     result = slot.fit(seed=0, on_epoch=lambda e, a: None, epochs=1)
        >>> counts["params"], out_shape, len(result.curve)
        (10, (1, 2), 1)
    """

    size = 1

    def __init__(self, device: torch.device, train: Split, val: Split) -> None:
        self.device = device
        self.train = to_device(train, device)
        self.val = to_device(val, device)
        self._lock = threading.Lock()
        self._model: nn.Module | None = None
        self.unusable: BaseException | None = None

    @contextlib.contextmanager
    def slot(self) -> Iterator[LocalRunner]:
        with self._lock:
            try:
                yield self
            finally:
                self._model = None

    def measure(
        self, model: nn.Module, input_shape: tuple[int, ...], latency_batch_size: int
    ) -> Measurement:
        def step() -> Measurement:
            self._model, measurement = _measure_on(
                model, self.device, input_shape, latency_batch_size
            )
            return measurement

        return self._freeing(step)

    def fit(
        self, *, seed: int, on_epoch: Callable[[int, float], None], **kwargs: Any
    ) -> TrainResult:
        if self._model is None:
            raise RuntimeError("measure() a network before fit().")
        return self._freeing(
            lambda: _seeded_fit(
                self._model, self.train, self.val, self.device, seed, on_epoch=on_epoch, **kwargs
            )
        )

    def _freeing(self, step: Callable[[], _T]) -> _T:
        """``step()``; when it raises (a failure, or the pruner's stop), the error goes on
        without its traceback, whose frames would hold the network, its optimizer and the
        last batch until the garbage collector ran (Optuna keeps the error in a cycle).
        After a fatal CUDA error (:func:`is_fatal`) this process cannot train again:
        ``unusable`` holds the error, and the search stops on it."""
        try:
            return step()
        except BaseException as error:
            failure = _detached(error)
        self._model = None
        if is_fatal(failure):
            self.unusable = failure
        elif isinstance(failure, Exception) and not isinstance(failure, _PRUNED):
            _release_memory(self.device)
        raise failure

    def weights(self) -> bytes:
        if self._model is None:
            raise RuntimeError("measure() and fit() a network before weights().")
        return state_bytes(self._model)

    def interrupt(self) -> None:
        """Nothing to do: its training runs in this process's main thread, which the
        interruption reaches itself."""

    def close(self) -> None:
        self._model = None


class DevicePool:
    """``trials_per_device`` worker processes per device, each a slot for one trial.

    The splits are shared with the workers once (shared memory) and each worker keeps them
    resident on its device. Workers do not share this process's memory, so networks are
    shipped pickled: the classes a space builds must be importable (defined at module
    level).

    Args:
        devices: Devices to spread the slots over.
        trials_per_device: Slots (worker processes) per device.
        train: The training split.
        val: The validation split.

    Example:
        >>> import torch
        >>> x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
        >>> with DevicePool([torch.device("cpu")], 2, (x, y), (x, y)) as pool:
        ...     with pool.slot() as slot:
        ...         counts, out_shape, ms = slot.measure(torch.nn.Linear(4, 2), (4,), 1)
        ...         result = slot.fit(seed=0, on_epoch=lambda e, a: None, epochs=2)
        >>> pool.size, len(result.curve)
        (2, 2)
    """

    def __init__(
        self,
        devices: Sequence[torch.device],
        trials_per_device: int,
        train: Split,
        val: Split,
    ) -> None:
        if not devices or trials_per_device < 1:
            raise ValueError(
                f"A pool needs devices and trials_per_device >= 1, but got {list(devices)} "
                f"and {trials_per_device}."
            )
        # A worker pins its device; plain "cuda" means the current one (without starting
        # CUDA here, where no child trains).
        current = torch.cuda.current_device() if torch.cuda.is_initialized() else 0
        devices = [
            torch.device("cuda", current) if d.type == "cuda" and d.index is None else d
            for d in map(torch.device, devices)
        ]
        self.size = len(devices) * trials_per_device
        self.unusable: BaseException | None = None  # A broken worker is replaced instead.
        threads = max(1, cpu_cores() // self.size)
        # Shared memory (/dev/shm) holds the splits as the workers' devices will: bf16
        # inputs where all are GPUs, half the size.
        compact = all(d.type == "cuda" for d in devices)
        splits = tuple(
            (t.to(torch.bfloat16) if compact and t.is_floating_point() else t).share_memory_()
            for t in (*train, *val)
        )
        self._slots = [
            _WorkerSlot(device, threads, splits)
            for device in devices
            for _ in range(trials_per_device)
        ]
        self._free: queue.Queue[_WorkerSlot] = queue.Queue()
        try:
            for slot in self._slots:
                slot.wait_ready()
                self._free.put(slot)
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def slot(self) -> Iterator[_WorkerSlot]:
        slot = self._free.get()
        try:
            yield slot
        finally:
            self._free.put(slot)

    def interrupt(self) -> None:
        """End every worker process now, mid-epoch: a training there would otherwise run
        on to its epoch's end. Their trials fail; none is restarted."""
        for slot in self._slots:
            slot.interrupt()

    def close(self) -> None:
        for slot in self._slots:  # All told first, then each waited for: they end together.
            slot.ask_to_close()
        for slot in self._slots:
            slot.close()

    def __enter__(self) -> DevicePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _WorkerSlot:
    """The parent's end of one worker process."""

    def __init__(self, device: torch.device, threads: int, splits: tuple[torch.Tensor, ...]):
        self.device = device
        self._args = (str(device), threads, splits)
        self._interrupted = False  # by Ctrl-C: no worker starts again
        self._start()

    def _start(self) -> None:
        context = _context()
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, *self._args), daemon=True, name=f"optnas-{self.device}"
        )
        self._process.start()
        child.close()
        self._ready = False

    def interrupt(self) -> None:
        if not self._interrupted:  # Once: a second kill could reach a reused pid.
            self._interrupted = True
            if self._process.is_alive():
                self._process.kill()

    def wait_ready(self) -> None:
        if not self._ready:
            self._expect("ready")
            self._ready = True

    def measure(
        self, model: nn.Module, input_shape: tuple[int, ...], latency_batch_size: int
    ) -> Measurement:
        self.wait_ready()
        self._send(("measure", _dumps(model), tuple(input_shape), latency_batch_size))
        return self._expect("ok")

    def fit(
        self, *, seed: int, on_epoch: Callable[[int, float], None], **kwargs: Any
    ) -> TrainResult:
        self._send(("fit", seed, kwargs))
        while True:
            message = self._receive()
            if message[0] != "epoch":
                return self._unwrap(message, "ok")
            try:
                on_epoch(message[1], message[2])
            except BaseException:
                self._send(("stop",))
                self._expect("stopped")
                raise
            self._send(("go",))

    def weights(self) -> bytes:
        self._send(("weights",))
        return self._expect("ok")

    def ask_to_close(self) -> None:
        if not self._conn.closed:
            with contextlib.suppress(OSError, ValueError):
                self._conn.send(("close",))

    def close(self) -> None:
        self.ask_to_close()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            self._conn.send(message)
        except (OSError, ValueError):
            raise self._died() from None

    def _receive(self) -> tuple[Any, ...]:
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            raise self._died() from None

    def _expect(self, kind: str) -> Any:
        return self._unwrap(self._receive(), kind)

    def _unwrap(self, message: tuple[Any, ...], kind: str) -> Any:
        if message[0] == "fatal":  # The worker exited after it: the next trial gets a new one.
            self._restart()
            raise message[1]
        if message[0] == "error":
            raise message[1]
        if message[0] != kind:
            raise RuntimeError(f"worker sent {message[0]!r} where {kind!r} was expected")
        return message[1] if len(message) > 1 else None

    def _died(self) -> WorkerDiedError:
        """Restart the worker (unless the search was interrupted); the error for the
        trial it held."""
        if self._interrupted:
            return WorkerDiedError(f"the worker process on {self.device} was stopped")
        code = self._restart()
        return WorkerDiedError(
            f"the worker process on {self.device} exited (code {code}) during the trial; "
            "it was restarted"
        )

    def _restart(self) -> int | None:
        """Start a new worker in place of the one that ended (unless interrupted); the old
        one's exit code."""
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        code = self._process.exitcode
        if not self._interrupted:
            self._conn.close()
            self._start()
        return code


def _context() -> Any:
    """Workers are forked from a server that imported torch and optnas once (a fresh
    interpreter each would import them again, seconds per worker), and that never touched
    CUDA, which does not survive a fork."""
    context = torch.multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", "optnas.pool"])
    return context


def _dumps(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    try:
        torch.save(model, buffer)
    except Exception as error:
        raise TypeError(
            f"The network cannot be pickled ({type(error).__name__}: {error}); a pool ships "
            "each network to a worker process, so the classes a space builds must be "
            "importable (defined at module level)."
        ) from error
    return buffer.getvalue()


class _Stopped(Exception):
    """The parent stopped the training (pruned, or its epoch callback raised)."""


class _Closed(Exception):
    """The parent closed the pool during a training."""


_PRUNED = (optuna.TrialPruned, _Stopped)


def _serve(conn: Any, device_name: str, threads: int, splits: tuple[torch.Tensor, ...]) -> None:
    """A worker's loop: measure and train the networks the parent sends, one at a time."""
    # Ctrl-C and SIGTERM (sent to a whole process group or job) are the parent's to
    # handle: it stops its workers; one whose parent is gone ends by itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_with_the_parent()
    torch.set_num_threads(threads)
    model = trained = loaded = None
    try:
        device = torch.device(device_name)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        train = to_device(splits[:2], device)
        val = to_device(splits[2:], device)
        conn.send(("ready",))
    except BaseException as error:
        _send_error(conn, error)
        return

    def on_epoch(epoch: int, accuracy: float) -> None:
        conn.send(("epoch", epoch, accuracy))
        answer = conn.recv()[0]
        if answer == "close":  # The pool shuts down: nothing more will come.
            raise _Closed
        if answer != "go":  # "stop"
            raise _Stopped

    while True:
        message = conn.recv()
        if message[0] == "close":
            return
        failure = None
        try:
            if message[0] == "measure":
                _, data, input_shape, batch_size = message
                model = trained = None  # The last network goes before the next one comes.
                loaded = torch.load(io.BytesIO(data), weights_only=False)
                model, measurement = _measure_on(loaded, device, input_shape, batch_size)
                loaded = None
                conn.send(("ok", measurement))
            elif message[0] == "weights":  # of the network trained last
                conn.send(("ok", state_bytes(model)))
            else:  # "fit": train the network measured last; kept for "weights"
                _, seed, kwargs = message
                trained, model = model, None
                result = _seeded_fit(
                    trained, train, val, device, seed, on_epoch=on_epoch, **kwargs
                )
                model, trained = trained, None
                conn.send(("ok", result))
        except _Stopped:
            trained = None
            conn.send(("stopped",))
        except _Closed:
            return
        except Exception as error:
            failure = _detached(error)
        if failure is not None:
            if is_fatal(failure):  # Before any freeing, which could fail in turn.
                _send_error(conn, failure, fatal=True)
                return  # The process ends; the parent starts a new worker in its place.
            # Outside the except block, so that nothing holds the failed step's tensors.
            model = trained = loaded = None
            _release_memory(device)
            _send_error(conn, failure)


def _exit_with_the_parent() -> None:
    """End this worker as soon as the process that started it is gone (killed, even by
    SIGKILL): no one is left to report to, and on a GPU its memory would stay taken until
    the training's next epoch tried to report."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # Returns once the parent's end of the pipe is closed: it exited.
        os._exit(1)

    threading.Thread(target=watch, name="optnas-parent-watch", daemon=True).start()


# CUDA's "sticky" errors: after one, every CUDA call of the process fails. Others (out of
# memory, a launch configuration a network's shapes exceed) fail their call alone.
_FATAL = (
    "illegal memory access",
    "device-side assert",
    "misaligned address",
    "illegal instruction",
    "unspecified launch failure",
    "launch timed out",
    "hardware stack error",
    "EXECUTION_FAILED",  # cuBLAS's and cuDNN's word for a kernel that failed so
)


def is_fatal(error: BaseException) -> bool:
    """Whether ``error`` is a CUDA error that leaves the process's CUDA context unusable
    (an illegal address, a device-side assert, a failed kernel): only a new process trains
    again. Out-of-memory and other errors of one call are not.

    Example:
        >>> is_fatal(RuntimeError("CUDA error: an illegal memory access was encountered"))
        True
        >>> is_fatal(RuntimeError("CUDA error: invalid configuration argument"))
        False
    """
    if isinstance(error, torch.OutOfMemoryError):
        return False
    text = str(error)
    return ("CUDA" in text or "CUBLAS" in text or "CUDNN" in text) and any(
        sticky in text for sticky in _FATAL
    )


def _detached(error: BaseException) -> BaseException:
    """``error`` without tracebacks, which would keep the failed step's tensors alive;
    a failure's text goes along as ``error.traceback_text`` (the trial's
    ``fail_traceback``)."""
    if not isinstance(error, _PRUNED):
        text = "".join(traceback.format_exception(error))
        error.traceback_text = text  # type: ignore[attr-defined]
    pending, seen = [error], set()
    while pending:  # Its causes and contexts too: each holds frames of its own.
        link = pending.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        link.__traceback__ = None
        pending += [link.__cause__, link.__context__]
    return error


def _release_memory(device: torch.device) -> None:
    """After an out-of-memory error the cached blocks would starve the other slots. A
    failure here (a CUDA context that broke after all) must not hide the trial's error."""
    if device.type != "cuda":
        return
    gc.collect()
    with contextlib.suppress(Exception):
        torch.cuda.empty_cache()


def _send_error(conn: Any, error: BaseException, *, fatal: bool = False) -> None:
    kind = "fatal" if fatal else "error"
    try:
        conn.send((kind, error))
    except Exception:  # The exception itself does not pickle: send its text.
        text = RuntimeError(f"{type(error).__name__}: {error}")
        text.traceback_text = getattr(error, "traceback_text", None)  # type: ignore[attr-defined]
        conn.send((kind, text))
