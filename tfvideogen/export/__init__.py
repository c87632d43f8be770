"""Exports: versioned SavedModels for TF Serving (signatures, warmup, server configs)."""

from tfvideogen.export.saved_model import (
    SIGNATURES,
    ExportRunConfig,
    IncompleteCheckpointError,
    VersionExistsError,
    export_from_config,
    export_run,
    export_saved_model,
    float32_policy,
    list_versions,
    next_version,
    untracked_weights,
)
from tfvideogen.serving.configs import ServingConfig

__all__ = ["SIGNATURES", "ExportRunConfig", "IncompleteCheckpointError", "ServingConfig",
           "VersionExistsError", "export_from_config", "export_run", "export_saved_model",
           "float32_policy", "list_versions", "next_version", "untracked_weights"]
