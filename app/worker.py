"""The trad worker: RQ's forking Worker plus what RQ does not do for us.

- SIGTERM (systemctl stop/restart) asks the running job to checkpoint (SIGUSR1 to the job
  process), then RQ's warm shutdown waits for it; a second SIGTERM/SIGINT stops at once.
- Every second while a job runs, and before every blocking pop while idle, the worker pings
  the systemd watchdog, updates STATUS, enforces the second phase of cancel (kills a job that
  ignored its cancel request for `cancel_grace_s`), and runs the reaper and reconciler pass
  when it is due.
- A stale Redis registration of the worker's own name (left by kill -9) is cleared at start.
- Stops always stop: only database and Redis errors are caught around code a signal can
  interrupt (and RQ's error reading a popped entry, with `StopRequested` re-raised first), so
  RQ's `StopRequested` (raised from the signal handler while idle) always reaches the work
  loop. The stop path itself never waits on Redis.
- A queue entry is data, never code: before forking, the worker refuses any entry that is not
  one `queue.enqueue` wrote (another function, callbacks, dependencies, other arguments), and
  any entry RQ cannot read, without importing what it names; it records the refusal in RQ's
  failed registry and logs it as an error. Whoever can write to Redis cannot run code here.
- It takes no commands over Redis (RQ's pub/sub channel): a stop is a signal from systemd or
  an operator, never a message that any holder of Redis credentials can publish.
- `stopped_unasked` tells the entry point that the loop ended without a stop request (RQ's loop
  quits on any unexpected error), so it exits non-zero and systemd restarts it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from rq.exceptions import DeserializationError, StopRequested
from rq.job import JobStatus as RQJobStatus
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import WorkerStatus
from sqlalchemy.exc import SQLAlchemyError

from app import notify
from app import queue as queue_module
from app.clock import utcnow
from app.db import transaction
from app.engine import registry
from app.execution import process, signals
from app.repositories import jobs as jobs_repo
from app.retry import retry_until
from app.services import lifecycle, maintenance
from app.settings import Settings
from app.status import JobStatus

log = logging.getLogger(__name__)


class TradWorker(Worker):
    max_connection_wait_time = 5.0  # longest back-off while Redis is away; stays under WatchdogSec

    def __init__(self, settings: Settings, name: str, connection: Redis) -> None:
        self.settings = settings
        super().__init__(
            queue_module.all_queues(connection),
            name=name,
            connection=connection,
            serializer=JSONSerializer,
            job_class=queue_module.TradJob,
            job_monitoring_interval=1,
            worker_ttl=settings.worker_idle_wait_s + 15,  # RQ blocks for worker_ttl - 15 s
        )
        self._next_maintenance = 0.0
        self._next_status = 0.0
        self.stop_asked = False  # a SIGTERM/SIGINT arrived
        self.running_job_id: str | None = None  # trad's id of the job the job process runs
        self.ran_dry = False  # burst mode: the queues were empty, a normal end

    @property
    def stopped_unasked(self) -> bool:
        """The work loop returned although nobody asked it to stop."""
        return not self.stop_asked and not self.ran_dry

    def execute_job(self, job, queue) -> None:
        """RQ's bookkeeping after a job needs Redis; if Redis is away at that moment the
        worker carries on (PostgreSQL already holds the outcome) instead of exiting.

        An entry that is not trad's is refused here, before RQ forks a job process, creates
        an execution or resolves anything the entry names (callbacks included: RQ runs the
        stopped callback in this process)."""
        reason = queue_module.refusal(job)
        if reason is not None:
            self._refuse(job, queue, reason)
            return
        self.running_job_id = job.args[0] if job.args else None
        try:
            super().execute_job(job, queue)
        except RedisError as exc:
            log.warning("Redis unavailable while finishing RQ's record of %s: %s", job.id, exc, extra=self._about_job())
            self._wait_out_job_process()
            self._horse_pid = 0
            self.set_state_safely(WorkerStatus.IDLE)
        finally:
            self.running_job_id = None

    def _about_job(self) -> dict[str, str]:
        """`extra` for this process's lines about the running job: they carry its id, as the
        job process's own lines do (maintenance lines, about other jobs, do not)."""
        return {"job_id": self.running_job_id} if self.running_job_id else {}

    def _refuse(self, job, queue, reason: str) -> None:
        """Mark a refused entry failed in RQ's failed registry of the queue it came from (for
        `rq info`), with the reason as its exception; nothing of it runs."""
        log.error(
            "queue entry %s from %s %s; nothing ran",
            job.id,
            queue.name,
            reason,
            extra={"rq_job_id": job.id, "func_name": _func_name(job), "queue": queue.name},
        )
        job.ended_at = now()
        try:
            with self.connection.pipeline() as pipe:
                job.set_status(RQJobStatus.FAILED, pipeline=pipe)
                queue.failed_job_registry.add(job, ttl=queue_module.FAILURE_TTL_S, exc_string=reason, pipeline=pipe)
                Result.create_failure(
                    job, queue_module.FAILURE_TTL_S, exc_string=reason, worker_name=self.name, pipeline=pipe
                )
                pipe.execute()
        except RedisError as exc:  # it is out of the queue already; the log line is the record
            log.warning("could not record the refusal of %s in Redis: %s", job.id, exc)

    def _wait_out_job_process(self) -> None:
        """A Redis error can surface while the job process still runs (RQ's monitor loop
        talks to Redis): wait for it to end rather than leave it behind, feeding the watchdog."""
        while self._horse_pid:
            try:
                pid, _ = os.waitpid(self._horse_pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                return
            notify.watchdog()
            time.sleep(0.2)

    def set_shutdown_requested_date(self) -> None:
        """Called from the signal handler: a stop must not depend on Redis answering."""
        try:
            super().set_shutdown_requested_date()
        except RedisError as exc:
            log.warning("could not record the stop request in Redis: %s", exc)

    def set_state_safely(self, state: str) -> None:
        try:
            self.set_state(state)
        except RedisError:
            self._state = state

    def teardown(self) -> None:
        try:
            super().teardown()
        except RedisError as exc:  # its registration expires by itself
            log.warning("could not unregister from Redis: %s", exc)

    def check_for_suspension(self, burst: bool) -> None:
        self._until_redis_answers(lambda: super(TradWorker, self).check_for_suspension(burst))

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        while True:
            try:
                result = self._until_redis_answers(
                    lambda: super(TradWorker, self).dequeue_job_and_maintain_ttl(timeout, max_idle_time)
                )
                break
            except StopRequested:
                raise
            except Exception as exc:
                # RQ attaches the popped id to an error reading the entry; any other error
                # is not ours to judge, and neither is anything once a stop was asked for.
                rq_job_id = getattr(exc, "job_id", None)
                if rq_job_id is None or self.stop_asked:
                    raise
                log.error(
                    "queue entry %s refused: RQ cannot read it (%s: %s); nothing ran",
                    rq_job_id,
                    type(exc).__name__,
                    exc,
                    extra={"rq_job_id": rq_job_id},
                )
        if result is None and timeout is None:
            self.ran_dry = True
        return result

    def _until_redis_answers(self, call):
        """RQ's work loop quits on a Redis error outside its blocking pop. Ride the outage out
        instead: keep the watchdog fed, keep the reaper running, and try again."""

        def waiting(exc: Exception, delay: float) -> None:
            notify.watchdog()
            notify.status(f"waiting for Redis: {exc}")
            log.warning("Redis unavailable; retrying in %.1fs: %s", delay, exc)

        return retry_until(
            call,
            retry_on=(RedisError,),
            budget_s=None,
            max_delay_s=self.max_connection_wait_time,
            on_retry=waiting,
            give_up=lambda: self.stop_asked,
        )

    # --- start-up -------------------------------------------------------------------------

    def subscribe(self) -> None:
        """RQ's workers listen for commands (shutdown, kill-horse, stop-job) on a pub/sub
        channel that any holder of Redis credentials can publish to. trad sends none: its
        stops are signals, its cancels go through PostgreSQL. Not subscribing leaves nothing
        to obey, and the Redis users need no channel at all."""
        log.info("worker %s takes no commands over Redis; stop it with a signal", self.name)

    def register_birth(self) -> None:
        if self.connection.exists(self.key) and not self.connection.hexists(self.key, "death"):
            log.warning("clearing a stale registration of worker name %s", self.name)
            self.register_death()
        super().register_birth()

    # --- signals --------------------------------------------------------------------------

    def request_stop(self, signum, frame) -> None:
        self.stop_asked = True
        notify.stopping("stopping: checkpointing the running job" if self.horse_pid else "stopping")
        if self.get_state() == WorkerStatus.BUSY and self.horse_pid:
            log.info("asking job process %d to checkpoint", self.horse_pid, extra=self._about_job())
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.horse_pid, signals.CHECKPOINT_SIGNAL)
        super().request_stop(signum, frame)

    def setup_work_horse_signals(self) -> None:
        super().setup_work_horse_signals()
        process.enter_job_process(self.name, os.getppid(), self.settings.database_url)

    # --- periodic duties ------------------------------------------------------------------

    def heartbeat(self, timeout=None, pipeline=None) -> None:
        if pipeline is not None or self.is_horse:
            return super().heartbeat(timeout, pipeline)
        notify.watchdog()  # the loop is alive, whether or not Redis answers
        try:
            super().heartbeat(timeout, pipeline)
        except RedisError as exc:  # the next blocking pop backs off and retries
            log.warning("Redis unavailable for the worker heartbeat: %s", exc)
        if self.get_state() != WorkerStatus.BUSY:
            notify.status("idle")
        self._maybe_maintain()

    def maintain_heartbeats(self, job, execution) -> None:
        notify.watchdog()
        try:
            super().maintain_heartbeats(job, execution)
        except RedisError as exc:  # the job runs on; its own heartbeat goes to PostgreSQL
            log.warning("Redis unavailable while a job runs: %s", exc, extra=self._about_job())
        try:
            self._watch_job(uuid.UUID(job.args[0]))
        except SQLAlchemyError as exc:  # PostgreSQL away: try again next second
            self._raise_if_stopping(exc)
            log.warning("could not check the running job: %s", exc, extra=self._about_job())
        self._maybe_maintain()

    def _maybe_maintain(self) -> None:
        now = time.monotonic()
        if now < self._next_maintenance:
            return
        self._next_maintenance = now + self.settings.maintenance_interval_s
        try:
            report = maintenance.run_once(self.settings, self.connection)
        except (SQLAlchemyError, RedisError) as exc:
            self._raise_if_stopping(exc)
            log.warning("maintenance pass failed: %s", exc)
            return
        if report.reaped or report.redispatched:
            log.info("maintenance: reaped %s, redispatched %s", report.reaped, report.redispatched)

    def _raise_if_stopping(self, exc: Exception) -> None:
        """A stop signal that interrupted a query can surface as the driver's error about the
        abandoned query (e.g. on rollback) instead of as `StopRequested`: stop anyway."""
        if self.stop_asked and self.get_state() != WorkerStatus.BUSY:
            raise StopRequested() from exc

    def _watch_job(self, job_id: uuid.UUID) -> None:
        with transaction(self.settings.database_url) as session:
            row = jobs_repo.watch(session, job_id)
        if row is None:
            return
        now_mono = time.monotonic()
        if now_mono >= self._next_status:
            self._next_status = now_mono + 2
            notify.status(f"job {job_id} {row.phase or 'starting'} {row.percent:.0f}%")
        overdue = (
            row.cancel_requested_at
            and (utcnow() - row.cancel_requested_at).total_seconds() > self.settings.cancel_grace_s
        )
        if row.status == JobStatus.RUNNING and overdue and self.horse_pid and row.current_attempt_id:
            self._kill_for_cancel(job_id, row.current_attempt_id)

    def _kill_for_cancel(self, job_id: uuid.UUID, attempt_id: int) -> None:
        log.warning(
            "job did not stop within %.0fs of its cancel request: killing it",
            self.settings.cancel_grace_s,
            extra={"job_id": str(job_id)},
        )
        self._stopped_job_id = self.get_current_job_id()
        self.kill_horse()
        with transaction(self.settings.database_url) as session:
            claim = lifecycle.lock_owned(session, job_id, attempt_id)
            if claim is not None:
                lifecycle.cancel(session, claim, f"canceled: killed after {self.settings.cancel_grace_s:.0f}s grace")


def preload() -> None:
    """Import every kind's handler (and the job entrypoint) in the worker before it forks, so a
    job process inherits them instead of paying the imports (NumPy, Optuna) per job
    ([docs/benchmarks.md](docs/benchmarks.md) has the figure); and load the engine's compiled
    kernels (from numba's cache directory, compiling them there the first time), so no job
    process loads or compiles them again."""
    import app.execution.runner
    import app.jobs  # noqa: F401
    from app.engine import kernel
    from app.kinds import KINDS

    for kind in KINDS.values():
        kind.load_handler()
    registry.log_broken()  # the installed strategies, imported once here; a broken one logged by name
    kernel.warm()


def _func_name(job) -> str | None:
    """The function an entry names, as text, for the log (None when unreadable)."""
    try:
        return str(job.func_name)[:200]
    except DeserializationError:
        return None
