"""Group commit: work handed in by a web process's request threads, written by one thread of
the process in batches, each batch whatever gathered while the previous one was written.

A request waits for its batch (so what it answers is what was stored), for as long as its
subclass allows (each module's WAIT_SECONDS). Subclasses say how a batch is written
(`flush`). Used by the open pixel (tracking.hits) and the track API (tracking.fasttrack):
one transaction a request topped out near 1,100/s on two cores for each.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from typing import Any

from django.db import close_old_connections, connection

log = logging.getLogger("postroom.groupcommit")


class GroupCommit(ABC):
    name = "postroom-batches"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: list[Any] = []
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.stopping = False

    def hand_in(self, item: Any) -> None:
        """Queue `item` for the next batch, starting the writer thread if need be."""
        with self.lock:
            self.pending.append(item)
            if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
                self.start()  # the first item, or the first after a fork: threads do not fork
        self.wake.set()

    def take(self) -> list[Any]:
        """Everything gathered so far, leaving none."""
        with self.lock:
            batch, self.pending = self.pending, []
        return batch

    def start(self) -> None:
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping:
            self.wake.wait(1.0)
            self.wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("%s: writing a batch failed", self.name)
                connection.close()  # a fresh connection for the next batch
                time.sleep(0.5)
            close_old_connections()
        connection.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Wake the writer for a last batch and end its thread, which closes its connection
        (tests: a web process's writer lives as long as the process)."""
        self.stopping = True
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout)

    @abstractmethod
    def flush(self) -> int:
        """Write what gathered (`take()`); how many. Runs on the writer thread."""
