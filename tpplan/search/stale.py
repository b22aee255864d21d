"""Trials a killed worker left RUNNING, found and failed so they stop counting against --trials.

A worker killed with SIGKILL (or a power cut) leaves its trial RUNNING in the storage. Optuna fails such
a trial only once its heartbeat is older than the grace period, and only when another trial starts; a
trial killed before its first heartbeat has none and is never failed. `run` counts RUNNING trials
towards --trials (several live workers share the budget), so the same command re-run found the budget
spent and stopped one trial short for ever. Each trial records its worker (host:pid) the moment it is
created (`mark_worker`, from the sampler's before_trial); a RUNNING trial is dead when that process is
gone from this host, when its heartbeat is stale, or when it names no worker (a kill between Optuna
creating it and tpplan naming it) and still names none half a second later, or after the grace period.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time

import optuna
from optuna.trial import FrozenTrial, TrialState

WORKER = "tpplan:worker"  # trial system attr: host:pid of the process running it
UNNAMED_WAIT_S = 0.5  # a trial is named (mark_worker) a few ms after it is created
FAIL_REASON = "fail_reason"  # trial user attr, also set by Optuna's own stale-trial handling


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def mark_worker(study: optuna.Study, trial: FrozenTrial) -> None:
    study._storage.set_trial_system_attr(trial._trial_id, WORKER, this_worker())


def fail_dead_trials(study: optuna.Study, grace_s: float) -> list[int]:
    """Mark FAIL every RUNNING trial whose worker is gone; the numbers of the trials failed."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    stale = set(_stale_ids(study)) if running else set()
    dead = {t.number: (t, why) for t in running if (why := _dead(t, t._trial_id in stale, grace_s))}
    unnamed = [t for t in running if t.number not in dead and _worker(t) is None]
    if unnamed:  # a live worker names its new trial within milliseconds; look again after a pause
        time.sleep(UNNAMED_WAIT_S)
        again = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        for t in unnamed:
            if t.number in again and _worker(again[t.number]) is None:
                dead[t.number] = (
                    t,
                    "a worker died before it recorded this trial as its own (found on resume)",
                )
    failed = []
    for number, (t, why) in sorted(dead.items()):
        try:
            study._storage.set_trial_user_attr(t._trial_id, FAIL_REASON, why)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # finished, or failed by another worker meanwhile
        failed.append(number)
    return failed


def _worker(t: FrozenTrial) -> str | None:
    worker = t.system_attrs.get(WORKER) or t.user_attrs.get("worker")
    return worker if isinstance(worker, str) and ":" in worker else None


def _dead(t: FrozenTrial, stale: bool, grace_s: float) -> str | None:
    worker = _worker(t)
    if worker is not None and worker.rpartition(":")[0] == socket.gethostname():
        pid = worker.rpartition(":")[2]
        if pid.isdigit() and not _alive(int(pid)):
            return f"worker {worker} died with this trial running (found on resume)"
        return None  # alive on this host
    if stale:
        return f"worker {worker} sent no heartbeat for over {grace_s:.0f} s (found on resume)"
    started = t.datetime_start
    if worker is None and (started is None or (dt.datetime.now() - started).total_seconds() > grace_s):
        return "a worker died before this trial recorded who ran it (found on resume)"
    return None


def _stale_ids(study: optuna.Study) -> list[int]:
    """Optuna's own heartbeat test (on the database's clock); not public API, so guarded."""
    get = getattr(study._storage, "_get_stale_trial_ids", None)
    try:
        return get(study._study_id) if get and study._storage.get_heartbeat_interval() else []
    except Exception:  # noqa: BLE001 - a storage without heartbeats: the pid and start time decide
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
