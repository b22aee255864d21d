"""The search stage (`tpplan search`): an Optuna study over serving configurations.

    space.Space / Setup        what may be chosen, sampled by index so TPE sees ordered integers
    batch.solve                a setup's best integer max_num_seqs, by bisection (every_integer: all)
    objective.score            a configuration's tokens/USD and constraints, in numbers
    study.run                  the Optuna study (the only module importing optuna; import it lazily)
    explain.neighbours         what the winner's neighbours lost on

The façade (tpplan/api_search.py) builds the space, passes an evaluator that composes the candidates
stage and the cost model, and writes the plan.
"""

from .batch import Solved, every_integer, solve
from .explain import neighbours
from .objective import CONSTRAINTS, Evaluate, Evaluation, Question, better, config_of, pareto_front, score
from .space import MAX_SEQS, Arm, Config, Setup, Space, dtype_pairs

__all__ = [
    "CONSTRAINTS",
    "MAX_SEQS",
    "Setup",
    "Solved",
    "every_integer",
    "solve",
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
