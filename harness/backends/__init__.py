"""Backends: one module per wire protocol, created from a BackendConfig."""

from __future__ import annotations

from pathlib import Path

from ..config import BackendConfig
from .base import Backend, BackendError, public_url

__all__ = ["Backend", "BackendError", "create_backend", "public_url"]


def create_backend(config: BackendConfig, *, parallel: int = 4, log_dir: Path | None = None) -> Backend:
    """Build the Backend object for a config entry (the embedded server is started later, by `start`)."""
    common = {"api_key": config.resolved_api_key(), "timeout": config.timeout}
    if config.protocol == "ollama":
        from .ollama import OllamaBackend

        return OllamaBackend(config.name, config.resolved_base_url(), **common)
    if config.protocol == "openai":
        from .openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(config.name, config.resolved_base_url() or "", **common)
    from .local import LocalBackend

    return LocalBackend(config.name, model_path=config.model_path, parallel=parallel, log_dir=log_dir,
                        timeout=config.timeout)
