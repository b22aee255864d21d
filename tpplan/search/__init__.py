"""The search stage (`tpplan search`): an Optuna study over serving configurations.

    space.Space / Setup        what may be chosen, sampled by index so TPE sees ordered integers
    batch.solve                a setup's best integer max_num_seqs, by regula falsi (every_integer: all)
    objective.score            a configuration's tokens/USD and constraints, in numbers
    study.run                  the Optuna study (the only module importing optuna; import it lazily)
    explain.neighbours         what the winner's neighbours lost on
    problem.pose               a validated question -> space, evaluator (candidates + cost model), fingerprint
    driver.run                 the study, the climb to a better neighbour, the ranking, the winner's Plan

The façade (tpplan/api/search.py) validates the question, loads the records and calls pose and run.
"""

from .batch import Solved, every_integer, solve
from .driver import assemble_plan, climb, exhaustive, no_winner, plan_paths, run, solved_setups
from .explain import neighbours
from .objective import CONSTRAINTS, Evaluate, Evaluation, Question, better, config_of, pareto_front, score
from .problem import SEARCH_VERSION, Prepared, build_space, evaluator, fingerprint, pose
from .rank import rank_key
from .space import MAX_SEQS, Arm, Config, Setup, Space, dtype_pairs

__all__ = [
    "CONSTRAINTS",
    "MAX_SEQS",
    "Setup",
    "Solved",
    "every_integer",
    "solve",
    "solved_setups",
    "SEARCH_VERSION",
    "Arm",
    "Config",
    "Evaluate",
    "Evaluation",
    "Prepared",
    "Question",
    "Space",
    "assemble_plan",
    "better",
    "build_space",
    "climb",
    "config_of",
    "dtype_pairs",
    "evaluator",
    "exhaustive",
    "fingerprint",
    "neighbours",
    "no_winner",
    "pareto_front",
    "plan_paths",
    "pose",
    "rank_key",
    "run",
    "score",
]
