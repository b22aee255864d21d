"""tpplan: measure tensor/pipeline-parallel layouts, fit a cost model, search tokens per dollar,
and emit vLLM / Megatron-LM / SGLang launch commands.

Importing tpplan is cheap: torch lives under `tpplan.sweep`, optuna in `tpplan.search`,
click in `tpplan.cli`.
"""

__version__ = "0.1.0"
