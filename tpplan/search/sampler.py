"""Sampling without replacement: every trial a configuration not yet taken.

TPE on a small discrete space converges onto its favourite point and keeps drawing it: on the bench's
space, three trials in four repeated a configuration already evaluated, and the optimum at the edge of
the TPOT SLO was often never drawn. This wrapper keeps the inner sampler (seeded TPE, or NSGA-II for
the Pareto front) in charge of *where* to look and makes each draw count: a proposal that names a
configuration already taken (evaluated, or running in another worker), or none within the budget,
becomes the nearest configuration that is free, by L1 distance over the normalised sampled indices
(another profile counts as the farthest step), ties broken by the seeded RNG. Before the inner sampler
has a model (TPE's startup trials, NSGA-II's first generation) it draws free configurations uniformly.

The relative search space is the space's fixed one, so the inner sampler models every parameter
jointly from the first trial on. Spaces with more than MAX_DRAWS draws pass proposals through as they
are (repeats are then answered from the study's cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from .space import Space

MAX_DRAWS = 500_000
TAKEN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class DistinctSampler(BaseSampler):
    def __init__(self, inner: BaseSampler, space: Space, seed: int) -> None:
        self._inner, self._space = inner, space
        self._rng = np.random.RandomState(seed)
        self._dists: dict[str, BaseDistribution] = {"profile": CategoricalDistribution(space.profiles)}
        self._dists.update({name: IntDistribution(lo, hi) for name, (lo, hi) in space.dims.items()})
        self._names = list(space.dims)
        self._spans = np.array([max(1, hi - lo) for lo, hi in space.dims.values()], dtype=float)
        draws = []
        for params, config in space.draws():
            draws.append((params, config.key))
            if len(draws) > MAX_DRAWS:
                draws = []
                break
        self._params = [p for p, _ in draws]
        self._rows_of: dict[str, list[int]] = {}
        for row, (_, key) in enumerate(draws):
            self._rows_of.setdefault(key, []).append(row)
        self._coords = np.array([self._coord(p) for p in self._params], dtype=float).reshape(len(draws), -1)

    def _coord(self, params: dict[str, Any]) -> list[float]:
        """Profile index, then each integer parameter scaled to [0, 1] by its range."""
        return [float(self._space.profiles.index(params["profile"]))] + [
            params[n] / s for n, s in zip(self._names, self._spans, strict=True)
        ]

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._dists)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        proposal = self._inner.sample_relative(study, trial, search_space)
        if not self._params:
            return proposal
        taken = self._taken(study, trial.number)
        free = np.ones(len(self._params), dtype=bool)
        for key in taken:
            free[self._rows_of.get(key, [])] = False
        if not free.any():  # every configuration is taken: let the proposal repeat one
            return proposal
        if len(proposal) == len(self._dists):
            config, _ = self._space.decode(proposal)
            if config is not None and config.key not in taken:
                return proposal
            d = self._distance(self._coord(proposal))
            d[~free] = np.inf
            choices = np.flatnonzero(d == d.min())
        else:  # no model yet: a free configuration, uniformly
            choices = np.flatnonzero(free)
        return dict(self._params[int(self._rng.choice(choices))])

    def _distance(self, coord: list[float]) -> np.ndarray:
        other_profile = (self._coords[:, 0] != coord[0]).astype(float)
        return other_profile + np.abs(self._coords[:, 1:] - np.array(coord[1:])).sum(axis=1)

    def _taken(self, study: Study, number: int) -> set[str]:
        taken = set()
        for t in study.get_trials(deepcopy=False, states=TAKEN):
            if t.number == number:
                continue
            key = t.user_attrs.get("config")
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
        self._inner.before_trial(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
        self._rng.seed()
