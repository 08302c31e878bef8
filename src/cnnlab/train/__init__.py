"""Training: a typed config, one readable ``fit()`` loop, recipes, checkpoints and resume.

The checkpoint contract (``save_model``, ``load_run``, ``preprocess``) lives in
:mod:`cnnlab.train.checkpoint`; importing this package stays light so other layers can use it.
"""

from cnnlab.train.checkpoint import LoadedRun, load_run, preprocess, save_model

__all__ = ["LoadedRun", "load_run", "preprocess", "save_model"]
