"""The model zoo: a strict registry and one file per family.

Every public module in this package is imported on first use of the registry, so a new family file
registers itself without editing this one.
"""

from cnnlab.models._registry import (
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
)
from cnnlab.models.spec import from_spec as from_spec

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]
