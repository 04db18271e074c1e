"""The job state machine as a table: every transition, allowed and refused, on in-memory rows.
No server is involved; the real-server tests cover the same moves through PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from psycopg import errors as pg_errors
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.execution.errors import Canceled, Fenced, JobInputError, Preempted, WorkerLost
from app.execution.runner import End, classify
from app.models import Attempt, Job
from app.queue import AttemptInterrupted
from app.services import lifecycle
from app.services.lifecycle import TRANSITIONS, Claim, IllegalTransition
from app.settings import Settings
from app.status import AttemptStatus, JobStatus

SETTINGS = Settings(retry_backoff_base_s=1, retry_backoff_max_s=2)
Q, R, S, F, C = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED


def make_job(status: JobStatus, *, max_attempts: int = 3, cancel_requested: bool = False) -> Job:
    job = Job(
        id=uuid.uuid4(),
        kind="smoke",
        status=status,
        priority="normal",
        params={},
        percent=0.0,
        attempts=1,
        max_attempts=max_attempts,
        rq_job_id="old-dispatch",
    )
    if status is R:
        job.current_attempt_id = 7
    if cancel_requested:
        job.cancel_requested_at = utcnow()
    return job


def make_claim(status: JobStatus = R, *, failures: int = 0, **kw) -> Claim:
    job = make_job(status, **kw)
    attempt = Attempt(id=7, job_id=job.id, number=failures + 1, status=AttemptStatus.RUNNING, worker_name="w")
    return Claim(job, attempt, counted_failures=failures)


def outbox(session: Session) -> list:
    return session.info.get("trad.outbox", [])


# --- each transition's function, applied to a job in a given status -----------------------

MOVES = {
    "claim": lambda s, job: lifecycle.start_attempt(job, "w", 1),
    "succeed": lambda s, job: lifecycle.succeed(s, Claim(job, Attempt(id=7)), "done"),
    "request_cancel": lambda s, job: lifecycle.request_cancel(s, job),
    "cancel": lambda s, job: lifecycle.cancel(s, Claim(job, Attempt(id=7)), "stopped"),
    "preempt": lambda s, job: lifecycle.preempt(s, Claim(job, Attempt(id=7))),
    "fail": lambda s, job: lifecycle.fail(
        s, Claim(job, Attempt(id=7, number=1)), SETTINGS, error_type="E", error_message="m", retryable=True
    ),
    "lose": lambda s, job: lifecycle.lose(s, Claim(job, Attempt(id=7, number=1)), SETTINGS, "gone"),
    "retry": lambda s, job: lifecycle.retry(s, job, counted_failures=0, max_attempts=2),
}


def test_every_transition_has_a_function_and_the_table_names_only_real_statuses():
    assert set(MOVES) | {"progress"} == set(TRANSITIONS)
    for sources in TRANSITIONS.values():
        for source, targets in sources.items():
            assert isinstance(source, JobStatus) and all(isinstance(t, JobStatus) for t in targets)


@pytest.mark.parametrize("transition", sorted(MOVES))
@pytest.mark.parametrize("status", list(JobStatus))
def test_allowed_and_refused_moves(transition: str, status: JobStatus):
    session, job = Session(), make_job(status)
    before = {c.key: getattr(job, c.key) for c in Job.__table__.columns}
    if status in TRANSITIONS[transition]:
        MOVES[transition](session, job)
        assert job.status in TRANSITIONS[transition][status]
    else:
        with pytest.raises(IllegalTransition):
            MOVES[transition](session, job)
        assert {c.key: getattr(job, c.key) for c in Job.__table__.columns} == before, "a refused move changes nothing"
        assert outbox(session) == [], "a refused move sends nothing"


def test_finished_statuses_are_exactly_those_no_attempt_can_leave():
    attempt_moves = {"succeed", "cancel", "preempt", "fail", "lose", "progress", "claim"}
    for status in JobStatus:
        reachable = any(status in TRANSITIONS[t] for t in attempt_moves)
        assert reachable is not status.is_finished
        assert status.is_retryable is (status in TRANSITIONS["retry"])
        assert status.is_cancelable is (status in TRANSITIONS["request_cancel"])


# --- what each allowed move leaves behind ---------------------------------------------------


def test_claim_starts_a_running_attempt_and_only_when_due():
    job = make_job(Q)
    job.not_before = utcnow() + timedelta(seconds=30)
    assert not lifecycle.is_due(job, utcnow())
    job.not_before = utcnow() - timedelta(seconds=1)
    assert lifecycle.is_due(job, utcnow())
    attempt = lifecycle.start_attempt(job, "w1", 42)
    assert (job.status, job.attempts, job.not_before) == (R, 2, None)
    assert (attempt.status, attempt.number, attempt.worker_name, attempt.pid) == (AttemptStatus.RUNNING, 2, "w1", 42)
    assert not lifecycle.is_due(job, utcnow()), "a running job cannot be claimed again"


def test_ownership_is_running_and_current():
    job = make_job(R)
    assert job.owned_by(7) and not job.owned_by(8)
    job.status = Q
    assert not job.owned_by(7)


def test_succeed():
    claim = make_claim()
    lifecycle.succeed(Session(), claim, "done")
    assert (claim.job.status, claim.job.percent, claim.job.current_attempt_id) == (S, 100.0, None)
    assert claim.attempt.status == AttemptStatus.SUCCEEDED and claim.job.finished_at is not None


def test_cancel_phase_two():
    claim = make_claim(cancel_requested=True)
    lifecycle.cancel(Session(), claim, "stopped")
    assert (claim.job.status, claim.attempt.status, claim.job.message) == (C, AttemptStatus.CANCELED, "stopped")


def test_request_cancel_of_a_queued_job_ends_it_and_withdraws_its_dispatch():
    session, job = Session(), make_job(Q)
    lifecycle.request_cancel(session, job)
    assert job.status == C and job.finished_at is not None and job.cancel_requested_at is not None
    [withdrawal] = outbox(session)
    assert withdrawal.rq_job_id == "old-dispatch"


def test_request_cancel_of_a_running_job_only_records_it():
    session, job = Session(), make_job(R)
    lifecycle.request_cancel(session, job)
    assert job.status == R and job.cancel_requested_at is not None and job.finished_at is None
    assert outbox(session) == []


def test_preempt_requeues_at_the_front_without_using_an_attempt():
    session, claim = Session(), make_claim()
    assert lifecycle.preempt(session, claim) is True
    assert (claim.job.status, claim.attempt.status, claim.job.current_attempt_id) == (Q, AttemptStatus.PREEMPTED, None)
    assert not AttemptStatus.PREEMPTED.uses_budget
    [send] = outbox(session)
    assert send.at_front and claim.job.rq_job_id != "old-dispatch"


def test_preempt_of_a_job_being_canceled_ends_it():
    session, claim = Session(), make_claim(cancel_requested=True)
    assert lifecycle.preempt(session, claim) is False
    assert claim.job.status == C and outbox(session) == []


@pytest.mark.parametrize(
    ("retryable", "failures", "max_attempts", "expected"),
    [(True, 0, 3, Q), (True, 1, 3, Q), (True, 2, 3, F), (False, 0, 3, F), (True, 0, 1, F)],
)
def test_fail_retries_with_backoff_while_the_budget_lasts(retryable, failures, max_attempts, expected):
    claim = make_claim(failures=failures, max_attempts=max_attempts)
    before = utcnow()
    lifecycle.fail(Session(), claim, SETTINGS, error_type="E", error_message="m", retryable=retryable)
    assert claim.job.status == expected and claim.attempt.status == AttemptStatus.FAILED
    assert (claim.job.error_type, claim.attempt.error_type) == ("E", "E")
    if expected is Q:
        assert claim.job.not_before is not None and claim.job.not_before >= before + timedelta(seconds=0.5)
        assert claim.job.rq_job_id is None, "the reconciler dispatches it when due"
    else:
        assert claim.job.finished_at is not None


def test_lose_uses_an_attempt_and_retries():
    claim = make_claim(failures=0, max_attempts=2)
    lifecycle.lose(Session(), claim, SETTINGS, "no heartbeat")
    assert (claim.job.status, claim.attempt.status, claim.job.error_type) == (Q, AttemptStatus.LOST, "WorkerLost")
    spent = make_claim(failures=1, max_attempts=2)
    lifecycle.lose(Session(), spent, SETTINGS, "no heartbeat")
    assert spent.job.status == F


@pytest.mark.parametrize("end", ["fail", "lose"])
def test_an_attempt_that_fails_while_its_job_is_being_canceled_ends_it_canceled(end):
    claim = make_claim(cancel_requested=True)
    MOVES[end](Session(), claim.job)
    assert claim.job.status == C


def test_close_orphan_touches_only_the_attempt():
    attempt = Attempt(id=3, status=AttemptStatus.RUNNING)
    lifecycle.close_orphan(Session(), attempt)
    assert attempt.status == AttemptStatus.LOST and attempt.finished_at is not None


@pytest.mark.parametrize("status", [F, C])
def test_manual_retry_gives_a_fresh_budget(status):
    session, job = Session(), make_job(status, cancel_requested=True)
    job.error_type = "E"
    lifecycle.retry(session, job, counted_failures=3, max_attempts=2)
    assert (job.status, job.max_attempts, job.cancel_requested_at, job.error_type) == (Q, 5, None, None)
    [send] = outbox(session)
    assert not send.at_front


# --- which errors end an attempt how -------------------------------------------------------


def _db_error(cls, orig):
    return cls("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    ("error", "end"),
    [
        (Canceled("x"), End.CANCEL),
        (Preempted("x"), End.PREEMPT),
        (Fenced("x"), End.FENCED),
        (WorkerLost("x"), End.LOSE),
        (AttemptInterrupted("x"), End.RETRY),
        (JobInputError("x"), End.FAIL),
        (ValueError("x"), End.FAIL),
        (ConnectionError("x"), End.RETRY),
        (_db_error(OperationalError, pg_errors.OperationalError("server closed the connection")), End.RETRY),
        (_db_error(InterfaceError, pg_errors.InterfaceError("connection already closed")), End.RETRY),
        # Deterministic database errors would fail the same way again: not retried.
        (_db_error(DataError, pg_errors.NumericValueOutOfRange("out of range")), End.FAIL),
        (_db_error(IntegrityError, pg_errors.UniqueViolation("duplicate key")), End.FAIL),
        (_db_error(ProgrammingError, pg_errors.UndefinedColumn("no such column")), End.FAIL),
    ],
)
def test_classify(error, end):
    assert classify(error) is end
