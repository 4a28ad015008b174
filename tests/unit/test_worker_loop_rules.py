"""The pull loop's side of the lost-reply rule (brokers/worker_loop.py, ``PollingWorker._exchange``):
after a transient error the loop calls ``_exchange`` again with the very settlements it still
holds, in the same list, which the adapter empties in place; a settlement the broker recorded
before its reply was lost is offered again, and counted once, by the adapter."""

from __future__ import annotations

from brokers.contract import Job, JobOptions
from brokers.worker_loop import Delivery, Fetched, PollingWorker


class LostReplyWorker(PollingWorker):
    """Hands out one job; the first call that settles it is applied by the "broker" and then
    loses its reply (a ConnectionError); the next call finds it applied and answers as the
    Redis adapter's resent call does."""

    transient_errors = (ConnectionError,)
    reconnect_for_s = 5.0
    idle_block_s = 0.01

    def __init__(self) -> None:
        super().__init__(lambda job: "ok", concurrency=1)
        self.calls: list[tuple[int, list[int]]] = []   # (id of the list, ids of its settlements)
        self.applied: set[str] = set()
        self.handed = False

    def _exchange(self, settlements, want):
        self.calls.append((id(settlements), [id(s) for s in settlements]))
        if settlements:
            first_time = not self.applied
            self.applied |= {s.job.id for s in settlements}   # the broker records them
            if first_time:
                raise ConnectionError("the reply was lost")
            for s in list(settlements):
                self._tally(s.job, s.outcome, s.reason)
            settlements[:] = []                                 # in place: the loop's own list
        fetched = Fetched()
        if want and not self.handed:
            self.handed = True
            fetched.deliveries.append(Delivery(Job("j1", "t", {}, JobOptions()), None, None))
        return fetched

    def _wait_for_work(self, seconds: float) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_lost_reply_is_retried_with_the_same_settlements_in_the_same_list_and_counted_once():
    worker = LostReplyWorker()
    report = worker.run(max_jobs=1, timeout=10)
    settling = [c for c in worker.calls if c[1]]
    assert len(settling) == 2, worker.calls
    (list_a, items_a), (list_b, items_b) = settling
    assert list_a == list_b, "the loop offers its own list again, not a copy"
    assert items_a == items_b, "the very settlements whose reply was lost are offered again"
    assert report.completed == 1 and report.reconnects == 1, report
