"""Requests, batch decisions and completed-request records: the data both engines exchange.

The record schema is the same in the simulator and the real harness, so one metrics module
summarizes both and a validation compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

# Status values of a request record.
COMPLETED = "completed"  # ran and finished
REJECTED = "rejected"  # refused with a reason (unplaced task, task ended, queue timeout, ...)
UNFINISHED = "unfinished"  # still queued or running when the run ended

RECORD_COLUMNS = (
    "request_id",
    "task",
    "arrival_s",
    "start_s",
    "finish_s",
    "latency_ms",
    "batch_id",
    "instance",
    "status",
    "reason",
)


@dataclass(frozen=True, slots=True)
class Request:
    """One inference request of one task."""

    id: int  # unique within a run, in arrival order
    task: str  # task (vFM) name
    arrival_s: float  # arrival time on the run's clock
    input_len: int  # tokens (or patches) of the input
    output_len: int = 0  # tokens to generate (decoder backbones)


@dataclass(frozen=True, slots=True)
class Batch:
    """A scheduler's decision: these requests run together in one backbone pass."""

    requests: tuple[Request, ...]  # rows, in the order the scheduler picked them
    leader: str | None = None  # task whose turn it was (None for arrival-order schedulers)

    @property
    def size(self) -> int:
        return len(self.requests)

    @property
    def seq_len(self) -> int:
        """Padded length of the batch: inputs are padded to the longest one."""
        reqs = self.requests
        if len(reqs) == 1:
            return reqs[0].input_len
        return max([r.input_len for r in reqs])

    @property
    def output_len(self) -> int:
        """Decode steps of the batch: static batching runs until the longest output."""
        reqs = self.requests
        if len(reqs) == 1:
            return reqs[0].output_len
        return max([r.output_len for r in reqs])

    def task_rows(self) -> dict[str, int]:
        """Rows per task, in first-appearance order."""
        reqs = self.requests
        if len(reqs) == 1:
            return {reqs[0].task: 1}
        rows: dict[str, int] = {}
        for r in reqs:
            rows[r.task] = rows.get(r.task, 0) + 1
        return rows

    def task_work(self) -> dict[str, int]:
        """Tokens per task: the share of the batch's work each task caused."""
        work: dict[str, int] = {}
        for r in self.requests:
            work[r.task] = work.get(r.task, 0) + r.input_len + r.output_len
        return work

    def to_dict(self) -> dict:
        return {
            "request_ids": [r.id for r in self.requests],
            "leader": self.leader,
            "size": self.size,
            "seq_len": self.seq_len,
        }


@dataclass(frozen=True, slots=True)
class Wait:
    """A scheduler's decision to hold the backbone idle until ``until_s`` to grow a batch.

    The engine wakes the scheduler again at ``until_s`` or at the next arrival, whichever
    comes first.
    """

    until_s: float  # clock value to wake up at


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """The fate of one request, as written to ``requests.csv``."""

    request_id: int  # Request.id
    task: str  # task name
    arrival_s: float  # when it arrived
    start_s: float | None  # when its batch started (None: never ran)
    finish_s: float | None  # when its batch finished (None: never ran)
    batch_id: int | None  # batch it ran in
    instance: str  # instance that served (or would have served) it; "" if none
    status: str  # COMPLETED, REJECTED or UNFINISHED
    reason: str = ""  # why it was rejected or left unfinished

    @property
    def latency_ms(self) -> float | None:
        if self.finish_s is None:
            return None
        return (self.finish_s - self.arrival_s) * 1000.0
