"""A background thread for fsyncs, so appends do not wait for the disk (group commit).

A checkpoint writes its frame, then hands "fdatasync the segment, then publish the checkpoint
copy" to this thread. Jobs are keyed: a newer job for the same key replaces a queued older one,
whose fsync the newer one covers (same file, later offset). `drain()` waits until everything
handed over is done, and re-raises the first failure; a failed fsync stops the ledger.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

from ledger.errors import LedgerError


class Syncer:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._jobs: dict[Hashable, Callable[[], None]] = {}
        self._busy = False
        self._stop = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ledger-fsync", daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, job: Callable[[], None]) -> None:
        with self._cv:
            self._check()
            self._jobs.pop(key, None)  # keep submission order: re-insert at the end
            self._jobs[key] = job
            self._cv.notify_all()

    def drain(self) -> None:
        with self._cv:
            while self._jobs or self._busy:
                self._cv.wait()
            self._check()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join()

    def _check(self) -> None:
        if self.error is not None:
            raise LedgerError(f"fsync failed: {self.error}", code="ledger.io_error") from self.error

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._stop:
                    self._cv.wait()
                if not self._jobs:
                    return
                jobs = list(self._jobs.values())
                self._jobs.clear()
                self._busy = True
            try:
                for job in jobs:
                    job()
            except Exception as exc:  # noqa: BLE001 - any failure must reach the writer thread
                with self._cv:
                    self.error = exc
                    self._jobs.clear()
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
