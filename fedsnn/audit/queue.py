"""Run attacks off the training's critical path: worker processes (or one background thread).

Workers receive only the observation and the attack settings; the job's round and partition stay
on the server side, where the auditor finds the ground truth (`fedsnn.audit.ground_truth`).
"""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
from concurrent.futures import (ALL_COMPLETED, Executor, Future, ProcessPoolExecutor,
                                ThreadPoolExecutor, wait)
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from logging import INFO

import torch
from flwr.common.logger import log

from attacks import AttackSettings, Observation, PublicData, Reconstruction, Status, invert


@dataclass
class AuditJob:
    """One attack on one client reply (round and partition: the auditor's key to the ground
    truth; they never reach the attack worker). `canary_ids`: for a canary (an update the server
    made itself, `fedsnn.audit.canary`), the ids of its images in the public data."""

    server_round: int
    partition_id: int
    observation: Observation
    settings: AttackSettings
    submitted: float = field(default_factory=time.monotonic)
    canary_ids: tuple[int, ...] = ()
    defense: str = ""  # a "what to change" canary: the client-side defense it was made under
    accuracy: float | None = None  # a canary's: its locally trained model's test accuracy

    @property
    def is_canary(self) -> bool:
        return bool(self.canary_ids)


def _limit_threads() -> None:
    torch.set_num_threads(1)


def run_attack(observation: Observation, settings: AttackSettings,
               public: PublicData | None = None) -> Reconstruction:
    """What a worker runs: the attack on the observation alone (and the public data granted)."""
    return invert([observation], settings, public=public)[0]


def run_attacks(observations: list[Observation], settings: AttackSettings,
                public: PublicData | None = None) -> list[Reconstruction]:
    """What a worker runs for a batch of jobs: DLG/iDLG/GRNN through the vectorized engine (one
    batched optimization, each target's result as alone), the unrolled attack with the replies of
    one shape stacked (attacks/unrolled_batched.py, likewise); other attacks one after the other
    (the rate decoder trains one decoder for the round's global model and serves them all)."""
    return invert(observations, settings, vectorize=True, public=public)


def _split(batch: Future[list[Reconstruction]], futures: list[Future[Reconstruction]]) -> None:
    """Resolve each job's future from its batch's result (or its error)."""
    for index, future in enumerate(futures):
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(batch.result()[index])
        except BaseException as error:  # noqa: BLE001 - handed to the job's future
            future.set_exception(error)


class AuditQueue:
    """Submit attacks as rounds go on; `drain` waits for them (bounded) at the end of the run.
    `public`: the public images the threat model grants, handed to every attack."""

    def __init__(self, workers: int = 1, public: PublicData | None = None) -> None:
        self.workers = workers
        self.public = public
        self._executor: Executor | None = None
        self._lock = threading.Lock()
        self.pending: list[tuple[AuditJob, Future[Reconstruction]]] = []

    def _pool(self) -> Executor:
        if self._executor is None:
            if self.workers == 0:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
            else:
                # spawn: the server process has gRPC/Ray threads, which fork would copy badly.
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_limit_threads)
        return self._executor

    def submit(self, job: AuditJob) -> None:
        with self._lock:
            future = self._pool().submit(run_attack, job.observation, job.settings, self.public)
            self.pending.append((job, future))

    def submit_many(self, jobs: list[AuditJob]) -> None:
        """Submit jobs together: those with equal settings are split evenly over the workers, and
        each worker attacks its share in one vectorized run (`run_attacks`). With public data
        they stay together in one worker, whose one decoder per global model serves them all."""
        groups: dict[AttackSettings, list[AuditJob]] = {}
        for job in jobs:
            groups.setdefault(job.settings, []).append(job)
        with self._lock:
            for settings, group in groups.items():
                shares = 1 if self.public is not None else max(self.workers, 1)
                size = math.ceil(len(group) / shares)
                for begin in range(0, len(group), size):
                    share = group[begin:begin + size]
                    futures: list[Future[Reconstruction]] = [Future() for _ in share]
                    batch = self._pool().submit(run_attacks, [j.observation for j in share],
                                                settings, self.public)
                    batch.add_done_callback(lambda done, futures=futures: _split(done, futures))
                    self.pending.extend(zip(share, futures, strict=True))

    def drain(self, timeout_s: float | None, progress_s: float = 15.0
              ) -> list[tuple[AuditJob, Reconstruction]]:
        """Wait for every job (at most `timeout_s` in all), logging how many are done every
        `progress_s`; unfinished ones are recorded as timed out (they stay in the audit's
        denominator), failures as failed. Shuts the workers down."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._wait_with_progress(deadline, progress_s)
        results = []
        for job, future in self.pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                reconstruction = future.result(timeout=remaining)
            except FutureTimeout:
                future.cancel()
                reconstruction = _placeholder(job, Status.TIMEOUT,
                                              "not finished when the server stopped waiting")
            except Exception as error:  # noqa: BLE001 - a worker crash is a failed attack
                reconstruction = _placeholder(job, Status.FAILED, f"worker error: {error!r}")
            results.append((job, reconstruction))
        self.close()
        return results

    def _wait_with_progress(self, deadline: float | None, progress_s: float) -> None:
        futures = [future for _, future in self.pending]
        started = time.monotonic()
        while True:
            done = sum(future.done() for future in futures)
            if done == len(futures):
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            log(INFO, "audit: %d of %d attacks finished after %.0f s; waiting%s", done,
                     len(futures), time.monotonic() - started,
                     "" if left is None else f" (at most {left:.0f} s more)")
            wait(futures, timeout=progress_s if left is None else min(progress_s, left),
                 return_when=ALL_COMPLETED)

    def close(self) -> None:
        if self._executor is not None:
            if isinstance(self._executor, ProcessPoolExecutor):
                for process in list(getattr(self._executor, "_processes", {}).values()):
                    process.terminate()  # a stuck attack must not keep the server alive
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _placeholder(job: AuditJob, status: Status, message: str) -> Reconstruction:
    batch = job.observation.batch_size
    return Reconstruction(target_id=job.observation.target_id, attack=job.settings.attack,
                          inputs=torch.full((batch, 1, 1, 1), math.nan),
                          labels=torch.full((batch,), -1, dtype=torch.long),
                          matching_loss=math.inf, status=status, message=message)
