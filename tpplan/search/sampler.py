"""Sampling without replacement: every trial a configuration not yet taken.

TPE on a small discrete space converges onto its favourite point and keeps drawing it: on the bench's
space, three trials in four repeated a configuration already evaluated, and the optimum at the edge of
the TPOT SLO was often never drawn. This wrapper keeps the inner sampler (seeded TPE, or NSGA-II for
the Pareto front) in charge of *where* to look and makes each draw count: a proposal that names a
configuration already taken (evaluated, or running in another worker), or none within the budget,
becomes the nearest free configuration by L1 distance in steps of doubling (TP, PP, replicas,
max_num_seqs; another GPU type is farther than any one step), ties broken by the seeded RNG. Before
the inner sampler has a model (TPE's startup trials, NSGA-II's first generation) it draws free
configurations uniformly.

Workers share one study: a trial claims its configuration in its system attrs as soon as it is chosen
(Optuna's own samplers keep their state there too), and `_taken` counts claims of running trials.

The relative search space is the space's fixed one, so the inner sampler models every parameter
jointly from the first trial on. Spaces with more than MAX_DRAWS draws pass proposals through as they
are (repeats are then answered from the study).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from .space import LOG_DIMS, Space
from .stale import mark_worker

MAX_DRAWS = 500_000
OTHER_PROFILE = 4.0  # another GPU type is farther than any one doubling step
CLAIM = "tpplan:config"  # trial system attr: the configuration a running trial has taken
CLAIM_ATTEMPTS = 8
TAKEN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class DistinctSampler(BaseSampler):
    """`inner`'s proposals, moved to the nearest configuration of `space` no trial has taken."""

    def __init__(self, inner: BaseSampler, space: Space, seed: int) -> None:
        self._inner, self._space = inner, space
        self.exhausted = False  # every configuration is taken: proposals pass through as repeats
        self.in_order = False  # take free setups in order, without the inner sampler (set by study.run)
        self._rng = np.random.RandomState(seed)
        self._dists: dict[str, BaseDistribution] = {"profile": CategoricalDistribution(space.profiles)}
        self._dists.update(
            {name: IntDistribution(lo, hi, log=name in LOG_DIMS) for name, (lo, hi) in space.dims.items()}
        )
        self._names = list(space.dims)
        draws = []
        for params, config in space.draws():
            draws.append((params, config.key))
            if len(draws) > MAX_DRAWS:
                draws = []
                break
        self._params = [p for p, _ in draws]
        self._keys = [k for _, k in draws]
        self._rows_of: dict[str, list[int]] = {}
        for row, key in enumerate(self._keys):
            self._rows_of.setdefault(key, []).append(row)
        self._coords = np.array([self._coord(p) for p in self._params], dtype=float).reshape(len(draws), -1)

    def _coord(self, params: dict[str, Any]) -> list[float]:
        """Profile index, then each parameter in steps of doubling: TP, PP, max_num_seqs and dtype are
        indices already, replicas count in log2 (8 -> 16 is as far as TP 4 -> 8)."""
        return [float(self._space.profiles.index(params["profile"]))] + [
            math.log2(params[n]) if n in LOG_DIMS else float(params[n]) for n in self._names
        ]

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._dists)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if "fixed_params" in trial.system_attrs:  # a re-queued trial keeps its params
            return {}
        # When the trials cover the space, the inner sampler's model only sets the order: skip it and
        # take the first free setup (the proposal {} below).
        proposal = {} if self.in_order else self._inner.sample_relative(study, trial, search_space)
        if not self._params:
            return proposal
        shunned: set[str] = set()
        for _ in range(CLAIM_ATTEMPTS):
            taken = self._taken(study, trial.number) | shunned
            chosen = self._choose(proposal, taken)
            if chosen is None:  # every setup is taken: the proposal repeats one (the nearest real one)
                self.exhausted = True
                nearest = self._choose(proposal, set())
                return nearest[0] if nearest else proposal
            params, key = chosen
            # Claim it where other workers look, then look again: of two workers that claimed the same
            # configuration, the later writer sees the earlier claim and chooses again.
            study._storage.set_trial_system_attr(trial._trial_id, CLAIM, key)
            if key not in self._taken(study, trial.number):
                return params
            shunned.add(key)
        return params

    def _choose(self, proposal: dict[str, Any], taken: set[str]) -> tuple[dict[str, Any], str] | None:
        """The proposal when it names a free configuration, else the nearest free one (uniformly at
        random before the inner sampler has a model); None when nothing is free."""
        free = np.ones(len(self._params), dtype=bool)
        for key in taken:
            free[self._rows_of.get(key, [])] = False
        if not free.any():
            return None
        if len(proposal) == len(self._dists):
            config, _ = self._space.decode(proposal)
            if config is not None and config.key not in taken:
                return proposal, config.key
            d = self._distance(self._coord(proposal))
            d[~free] = np.inf
            choices = np.flatnonzero(d == d.min())
        elif self.in_order:
            choices = np.flatnonzero(free)[:1]
        else:
            choices = np.flatnonzero(free)
        row = int(self._rng.choice(choices))
        return dict(self._params[row]), self._keys[row]

    def _distance(self, coord: list[float]) -> np.ndarray:
        other_profile = (self._coords[:, 0] != coord[0]).astype(float) * OTHER_PROFILE
        return other_profile + np.abs(self._coords[:, 1:] - np.array(coord[1:])).sum(axis=1)

    def _taken(self, study: Study, number: int) -> set[str]:
        """Configurations of every other trial: evaluated, running (claimed) or queued."""
        taken = set()
        for t in study.get_trials(deepcopy=False, states=TAKEN):
            if t.number == number:
                continue
            key = t.user_attrs.get("config") or t.system_attrs.get(CLAIM)
            if key is None and len(t.params) == len(self._dists):
                config, _ = self._space.decode(t.params)
                key = config.key if config else None
            if key:
                taken.add(key)
        return taken

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        mark_worker(study, trial)  # first thing after the trial exists: a kill -9 after it is traceable
        self._inner.before_trial(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
        self._rng.seed()
