"""The Optuna study: storage, sampler, the trial loop several workers share, and the results read back.

With sampler.py, the only module that imports optuna. A study lives in an RDB storage (SQLite in the run directory by
default, so `optuna-dashboard sqlite:///runs/search/study.db` opens it; any SQLAlchemy URL otherwise).
Workers started with the same storage and study name share it: each asks Optuna for the next trial
(trial numbers are allocated by the database), evaluates it, and stops when the study holds the number
of trials asked for. Trials are never dropped: an infeasible configuration is a COMPLETE trial whose
constraints (Optuna's `constraints_func`, values in objective.CONSTRAINTS order) say by how much it
missed; TPE and NSGA-II rank infeasible trials by the sum of their violations. Its reasons and every
number are in the user attr `result`. A worker that dies mid-trial stops sending heartbeats; the next
worker to start a trial marks that trial failed and re-queues its configuration (Optuna's heartbeat
retry callback); Ctrl-C fails only the trial it cuts short, and the same command continues the study.

DistinctSampler (sampler.py) draws a configuration no trial has taken while one is left; after that a
repeat is answered from the study's earlier trial (user attr `repeat_of`), not evaluated again.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from ..errors import ConfigError, TpplanError
from ..io import make_dir
from ..records import ScoredConfig
from .batch import solve
from .objective import CONSTRAINTS, Evaluate, Question, better, objective_values
from .sampler import DistinctSampler
from .space import Space
from .stale import fail_dead_trials

HEARTBEAT_S, GRACE_S = 10, 30  # a trial takes milliseconds; a worker silent for 30 s is gone
SQLITE_TIMEOUT_S = 60  # wait this long for another worker's write lock before giving up
CREATE_ATTEMPTS = 10
SCHEMA_RACE = ("already exists", "locked", "UNIQUE constraint", "duplicate key")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
URL_EXAMPLE = "sqlite:///runs/search/study.db or postgresql+psycopg2://user:pass@host/db"

Progress = Callable[[str], None]


class _SqliteConnection(sqlite3.Connection):
    """WAL journal and synchronous=NORMAL: readers do not block the writer, and a commit does not
    wait for fsync (a crashed process loses nothing; a power cut can lose the last commits)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA journal_mode=WAL")
        self.execute("PRAGMA synchronous=NORMAL")


def _stale_trial_retry() -> dict[str, Any]:
    """Re-queue a dead worker's trial: Optuna >= 4.9 names it heartbeat_stale_trial_callback."""
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
        return {
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
        }
    return {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=2)}


def open_storage(url: str) -> RDBStorage:
    """An RDB storage with heartbeats; a URL SQLAlchemy or the database refuses is a ConfigError."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            make_dir(Path(path).parent, "storage")
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S, "factory": _SqliteConnection}}
    try:
        return _create_storage(url, engine_kwargs)
    except Exception as e:  # SQLAlchemy's ArgumentError, a missing driver, a refused connection
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"cannot open this storage ({type(e).__name__}: {first})",
            field="storage",
            value=url,
            expected=f"an SQLAlchemy URL such as {URL_EXAMPLE}",
        ) from None


def _create_storage(url: str, engine_kwargs: dict[str, Any]) -> RDBStorage:
    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    **_stale_trial_retry(),
                )
        except (OperationalError, IntegrityError) as e:
            # Two workers starting on a new database both create the schema; the loser sees "table
            # ... already exists", a lock, or alembic's version row taken, and finds it made next time.
            attempt += 1
            if attempt == CREATE_ATTEMPTS or not any(w in str(e) for w in SCHEMA_RACE):
                raise
            time.sleep(0.1 + 0.2 * random.random())


Constraints = Callable[[optuna.trial.FrozenTrial], Sequence[float]]


def _sampler(space: Space, pareto: bool, seed: int, trials: int, constraints: Constraints) -> DistinctSampler:
    """Seeded TPE (multivariate: the space's parameters modelled jointly), or NSGA-II for the Pareto
    front, inside DistinctSampler. Constraints go in through `constraints_func`: Optuna 5 deprecates it
    for `trial.set_constraint`, which 4.x lacks and which costs a read and a write per constraint."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if pareto:
            inner: optuna.samplers.BaseSampler = optuna.samplers.NSGAIISampler(
                seed=seed, population_size=max(8, min(50, trials // 5)), constraints_func=constraints
            )
        else:
            inner = optuna.samplers.TPESampler(seed=seed, multivariate=True, constraints_func=constraints)
    return DistinctSampler(inner, space, seed)


def open_study(storage: RDBStorage, name: str, *, question: dict, pareto: bool) -> tuple[optuna.Study, bool]:
    """Create the study, or join it when it exists and asks the same question; (study, joined)."""
    directions = ["maximize", "minimize", "minimize"] if pareto else ["maximize"]
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions)
        joined = False
    except optuna.exceptions.DuplicatedStudyError:
        study, joined = optuna.load_study(study_name=name, storage=storage), True
    asked = study.user_attrs.get("question")
    if asked is None:
        study.set_user_attr("question", question)
    elif asked != question:
        differs = sorted(k for k in set(asked) | set(question) if asked.get(k) != question.get(k))
        raise ConfigError(
            f"study {name!r} was made for another question (differs in {', '.join(differs)})",
            field="study",
            value=name,
            expected="a new --study name, or the same model, profiles, workload and SLOs as before",
        )
    return study, joined


@dataclass
class Collected:
    results: list[ScoredConfig]  # one per distinct setup (at its best max_num_seqs), from its first trial
    trials: int  # finished trials
    repeats: int  # trials that drew an already evaluated setup
    probes: list[ScoredConfig] = field(default_factory=list)  # other max_num_seqs passed on the way (Pareto)


def collect(study: optuna.Study) -> Collected:
    """Every finished trial's setup; repeats (and, rarely, two workers that evaluated the same setup at
    the same moment) count once, under the lowest trial number."""
    first: dict[str, ScoredConfig] = {}
    probes: list[ScoredConfig] = []
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for t in sorted(finished, key=lambda t: t.number):
        key, result = t.user_attrs.get("config"), t.user_attrs.get("result")
        if key and result and key not in first:
            first[key] = ScoredConfig.model_validate(result)
            probes += [ScoredConfig.model_validate(p) for p in t.user_attrs.get("probes", [])]
    return Collected(list(first.values()), len(finished), len(finished) - len(first), probes)


def run(
    space: Space,
    question: Question,
    *,
    evaluate: Evaluate,
    study: optuna.Study,
    trials: int,
    seed: int,
    joined: bool = False,
    progress: Progress | None = None,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> Collected:
    """Add trials to the study until it holds `trials` of them (shared with other workers), or a callback
    stops it. A joining worker samples with a seed of its own: the creator's seed would draw the
    creator's points."""
    violations: dict[str, list[float]] = {}  # configuration -> constraint values, for constraints_func
    evaluated: dict[str, tuple[int, ScoredConfig]] = {}  # configuration -> (trial, result) in the study

    def remember_study() -> None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            key, result = t.user_attrs.get("config"), t.user_attrs.get("result")
            if key and result and (key not in evaluated or t.number < evaluated[key][0]):
                evaluated[key] = (t.number, ScoredConfig.model_validate(result))

    def constraints(t: optuna.trial.FrozenTrial) -> list[float]:
        key = t.user_attrs.get("config")
        if key is None:  # a draw outside the budget
            return [1.0 if name == "budget" else 0.0 for name in CONSTRAINTS]
        return violations[key]

    def objective(trial: optuna.Trial) -> tuple[float, ...] | float:
        setup, outside = space.suggest(trial)
        attrs: dict[str, Any] = {}  # the worker is a system attr already (stale.mark_worker)
        if setup is None:  # only a sampler without DistinctSampler's guard draws these
            trial.set_user_attr("reasons", [outside])
            return (0.0, math.inf, math.inf) if question.pareto else 0.0
        attrs["config"] = setup.key
        if setup.key not in evaluated and sampler.exhausted:  # another worker may have evaluated it
            remember_study()
        if setup.key in evaluated:  # every setup taken: DistinctSampler lets repeats through
            number, scored = evaluated[setup.key]
            attrs["repeat_of"] = number
        else:  # the setup at its best max_num_seqs, solved exactly (batch.py)
            solved = solve(space, setup, evaluate=evaluate, q=question, trial=trial.number)
            scored = solved.best
            attrs["result"] = scored.model_dump(mode="json")
            attrs["max_num_seqs_range"] = [1, solved.upper]
            if question.pareto:  # the values passed on the way are points of the front too
                attrs["probes"] = [p.model_dump(mode="json") for p in solved.probes if p is not scored]
            evaluated[setup.key] = (trial.number, scored)
        for name, value in attrs.items():
            trial.set_user_attr(name, value)
        violations[setup.key] = [scored.violations.get(name, 0.0) for name in CONSTRAINTS]
        values = objective_values(scored, question.pareto)
        return values if question.pareto else values[0]

    worker_seed = (seed + (os.getpid() if joined else 0)) % 2**32  # numpy's seed range
    sampler = _sampler(space, question.pareto, worker_seed, trials, constraints)
    sampler.in_order = trials >= space.size  # the trials cover the space: the order does not matter
    study.sampler = sampler
    remember_study()  # a resumed study: its evaluations are not repeated
    fail_dead_trials(study, GRACE_S)  # a killed worker's RUNNING trial must not use up the budget
    remaining = trials - len(study.get_trials(deepcopy=False, states=COUNTED))
    if remaining > 0:
        every: list[Callable] = [MaxTrialsCallback(trials, states=COUNTED), *callbacks]
        if progress:
            every.append(_reporter(trials, progress))
        try:
            with _graceful_interrupt() as stop:
                every.append(lambda st, _t: st.stop() if stop.requested else None)
                study.optimize(objective, n_trials=remaining, callbacks=every, catch=())
        except (optuna.exceptions.StorageInternalError, SQLAlchemyError) as e:
            raise TpplanError(f"the study's storage failed: {str(e).splitlines()[0]}") from None
        if stop.requested:
            raise KeyboardInterrupt
    return collect(study)


@dataclass
class _Stop:
    requested: bool = False


@contextmanager
def _graceful_interrupt() -> Iterator[_Stop]:
    """The first Ctrl-C lets the running trial finish (milliseconds) and stops the study, so no trial is
    left RUNNING in the storage (where it would count against --trials until a heartbeat expires);
    a second Ctrl-C interrupts at once."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _reporter(trials: int, progress: Progress) -> Callable:
    """Reports about ten times per search on stderr: trials, feasible, best so far."""
    every = max(1, math.ceil(trials / 10))
    state: dict[str, Any] = {"done": 0, "best": None, "feasible": 0}

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        state["done"] += 1
        result = trial.user_attrs.get("result")
        if result:
            s = ScoredConfig.model_validate(result)
            if s.feasible:
                state["feasible"] += 1
                if state["best"] is None or better(s, state["best"]):
                    state["best"] = s
        if state["done"] % every == 0:
            best = state["best"]
            shown = (
                f"best {best.output_tokens_per_usd:,.0f} tok/$ at {best.profile} {best.label()}"
                if best
                else "none feasible yet"
            )
            progress(
                f"search: trial {trial.number + 1}/{trials}; this worker: {state['done']} trials, "
                f"{state['feasible']} feasible; {shown}"
            )

    return report


@dataclass
class StoredStudy:
    """A study as a report reads it back: its name, the question it was made for, its results."""

    name: str
    question: dict
    collected: Collected


def read_studies(url: str) -> list[StoredStudy]:
    """Every study in a storage, oldest first, without running a trial (`tpplan report`)."""
    storage = open_storage(url)
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        out = []
        for name in names:
            study = optuna.load_study(study_name=name, storage=storage)
            out.append(StoredStudy(name, dict(study.user_attrs.get("question") or {}), collect(study)))
    except (optuna.exceptions.StorageInternalError, SQLAlchemyError) as e:
        raise ConfigError(
            f"cannot be read as an Optuna study ({str(e).splitlines()[0]})",
            file=url,
            expected="the study.db `tpplan search` writes",
        ) from None
    return out
