"""The search stage (`tpplan search`): an Optuna study over serving configurations.

    space.Space / Config       what may be chosen, sampled by index so TPE sees ordered integers
    objective.score            a configuration's tokens/USD and constraints, in numbers
    study.run                  the Optuna study (the only module importing optuna; import it lazily)
    explain.neighbours         what the winner's neighbours lost on

The façade (tpplan/api_search.py) builds the space, passes an evaluator that composes the candidates
stage and the cost model, and writes the plan.
"""

from .explain import neighbours
from .objective import CONSTRAINTS, Evaluate, Evaluation, Question, better, config_of, pareto_front, score
from .space import Arm, Config, Space, dtype_pairs

__all__ = [
    "CONSTRAINTS",
    "Arm",
    "Config",
    "Evaluate",
    "Evaluation",
    "Question",
    "Space",
    "better",
    "config_of",
    "dtype_pairs",
    "neighbours",
    "pareto_front",
    "score",
]
