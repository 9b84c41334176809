"""Group commit: a worker's writes to an SQLite ledger, taken by one thread of their own,
every write waiting at that moment in one transaction and one durable COMMIT.

SQLite admits one writer at a time, and each COMMIT is an fsync (0.3 ms median on this
machine's disk, 8 to 13 ms at its p90 to p99, hundreds of ms when other sessions write).
One COMMIT a batch, one batch at a time, made every batch that arrived during a slow fsync
wait for its own in turn: the batch latency's tail (tools/bench uplink). Here the writer
thread takes every write queued while it was busy (at most MAX_GROUP) into one
transaction, each under a savepoint of its own (SQLiteStore.transactions), and answers
each request only once that transaction's COMMIT has returned. A write that raises is
rolled back to its savepoint and gets its own exception; the others in its group are
unaffected. If the group's transaction itself fails (BEGIN, COMMIT), every write of it
gets the error and nothing of it is stored; the terminals send again.

Exactly-once does not depend on the grouping: records are keyed (terminal, counter) and a
batch's ack and request counter move in the batch's own savepoint, so two copies of one
batch in one group see each other as they would in two transactions.
"""

import asyncio
import queue
import threading

MAX_GROUP = 64  # writes in one transaction: bounds the wait of the group's first


class GroupWriter:
    """`await writer.write(work)`: work() runs on the writer thread inside a group's
    transaction; its result (or exception) is returned once that transaction is durable.
    `run_group(works)` does the transaction: [(True, result) or (False, exception)] in the
    order of `works`, or an exception for the group as a whole."""

    def __init__(self, run_group, max_group=MAX_GROUP, name="ledger-writer"):
        self._run_group = run_group
        self._max_group = max_group
        self._name = name
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._starting = threading.Lock()

    async def write(self, work):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._thread is None:
            self._start()
        self._queue.put((work, loop, future))
        return await future

    def _start(self):
        with self._starting:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                thread.start()
                self._thread = thread

    def _run(self):
        while True:
            group = [self._queue.get()]
            while len(group) < self._max_group:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # A request whose client went away before its turn: nothing to do for it (the
            # terminal sends the batch again).
            group = [entry for entry in group if not entry[2].cancelled()]
            if not group:
                continue
            try:
                outcomes = self._run_group([work for work, _, _ in group])
            except Exception as exc:  # the group's transaction: nothing of it is stored
                outcomes = [(False, exc)] * len(group)
            for (_, loop, future), (ok, value) in zip(group, outcomes, strict=True):
                try:
                    loop.call_soon_threadsafe(_settle, future, ok, value)
                except RuntimeError:
                    pass  # the event loop has closed: nobody waits for the answer


def _settle(future, ok, value):
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
