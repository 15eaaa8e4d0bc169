"""Configuration: `config/backends.yaml`, MetaGPT's `config2.yaml`, and CLI overrides.

Users already have a MetaGPT config pointing at their server; reading it as-is
(`--config ~/.metagpt/config2.yaml`) means zero re-typing. API keys are taken
from the environment (or, discouraged, the file) and only ever live in memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Every name a user might reasonably type, mapped onto the two wire protocols
# (plus the embedded server, which speaks the OpenAI protocol once started).
KIND_ALIASES: dict[str, str] = {
    "ollama": "ollama",
    "openai": "openai",
    "open_llm": "openai",
    "vllm": "openai",
    "llamacpp": "openai",
    "llama.cpp": "openai",
    "llama_cpp": "openai",
    "fastchat": "openai",
    "llama-factory": "openai",
    "llama_factory": "openai",
    "llamafactory": "openai",
    "local": "local",
}

# Where each server listens by default, so `--backend vllm` alone just works.
DEFAULT_BASE_URLS: dict[str, str] = {
    "vllm": "http://127.0.0.1:8000/v1",
    "fastchat": "http://127.0.0.1:8000/v1",
    "llama-factory": "http://127.0.0.1:8000/v1",
    "llama_factory": "http://127.0.0.1:8000/v1",
    "llamafactory": "http://127.0.0.1:8000/v1",
    "llamacpp": "http://127.0.0.1:8080/v1",
    "llama.cpp": "http://127.0.0.1:8080/v1",
    "llama_cpp": "http://127.0.0.1:8080/v1",
}

DEFAULT_CONFIG_PATH = Path("config/backends.yaml")


class ConfigError(ValueError):
    """A config file or a command-line combination that cannot work, said plainly."""


class BackendConfig(BaseModel):
    """One server to evaluate against."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: str
    base_url: str | None = None
    models: list[str] = Field(default_factory=list)
    api_key: str | None = Field(default=None, repr=False)
    api_key_env: str | None = None
    concurrency: int | None = Field(default=None, gt=0)
    # Whole-answer limit per request. Generous: a CPU server decoding 1.5k tokens on a busy
    # box can take minutes, and a slow answer is data while a timed-out one is lost.
    timeout: float = Field(default=600.0, gt=0)
    model_path: str | None = None  # local kind only: any GGUF file

    @property
    def protocol(self) -> str:
        return KIND_ALIASES[self.kind]

    def resolved_api_key(self) -> str | None:
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        if self.protocol == "openai":
            return os.environ.get("OPENAI_API_KEY")
        return None

    def resolved_base_url(self) -> str | None:
        if self.base_url:
            return self.base_url
        if self.protocol == "ollama":
            from .backends.ollama import ollama_host_from_env

            return ollama_host_from_env()
        if self.protocol == "openai":
            return DEFAULT_BASE_URLS.get(self.kind) or os.environ.get("OPENAI_BASE_URL")
        return None


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    metric: str | None = None
    max_drop: float | None = None
    latency_p95_max_increase: str | float | None = None


class HarnessConfig(BaseModel):
    """Everything a config file can say."""

    model_config = ConfigDict(extra="forbid")
    default: str | None = None
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    repair: bool = True
    gate: GateConfig = Field(default_factory=GateConfig)
    source: str | None = None


def _check_kind(name: str, kind: str, where: str) -> None:
    if kind not in KIND_ALIASES:
        raise ConfigError(f"{where}: backend {name!r} has unknown kind {kind!r}; use one of {', '.join(KIND_ALIASES)}")


def _from_harness_file(data: dict[str, Any], where: str) -> HarnessConfig:
    backends: dict[str, Any] = {}
    for name, entry in (data.get("backends") or {}).items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: backends.{name} must be a mapping")
        entry = {"name": name, "kind": entry.get("kind", name), **{k: v for k, v in entry.items() if k != "kind"}}
        _check_kind(name, entry["kind"], where)
        backends[name] = entry
    try:
        return HarnessConfig(
            default=data.get("default"),
            backends=backends,
            repair=data.get("repair", True),
            gate=data.get("gate") or {},
            source=where,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{where}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def _from_metagpt_file(data: dict[str, Any], where: str) -> HarnessConfig:
    """MetaGPT's `llm:` section -> one backend named after its api_type."""
    llm = data.get("llm") or {}
    api_type = str(llm.get("api_type", "openai"))
    if api_type not in KIND_ALIASES:
        raise ConfigError(f"{where}: llm.api_type {api_type!r} is not one harness can call (use open_llm, ollama or openai)")
    base_url = llm.get("base_url")
    if KIND_ALIASES[api_type] == "ollama" and base_url:
        base_url = base_url.rstrip("/")
        base_url = base_url[: -len("/api")] if base_url.endswith("/api") else base_url
    backend = BackendConfig(
        name=api_type,
        kind=api_type,
        base_url=base_url,
        models=[llm["model"]] if llm.get("model") else [],
        api_key=llm.get("api_key") if llm.get("api_key") not in (None, "", "YOUR_API_KEY", "sk-") else None,
        timeout=float(llm.get("timeout", 600)),
    )
    return HarnessConfig(default=api_type, backends={api_type: backend},
                         repair=bool(data.get("repair_llm_output", True)), source=where)


def load_config(path: Path | str | None) -> HarnessConfig:
    """Load a harness or MetaGPT config; a missing default file means 'no backends configured'."""
    if path is None:
        if not DEFAULT_CONFIG_PATH.exists():
            return HarnessConfig()
        path = DEFAULT_CONFIG_PATH
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping")
    if "llm" in data:
        return _from_metagpt_file(data, str(path))
    return _from_harness_file(data, str(path))


def select_backend(
    config: HarnessConfig,
    backend: str | None,
    *,
    models: list[str] | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    model_path: str | None = None,
) -> BackendConfig:
    """Pick the backend a command runs on: named in config, a kind typed on the CLI, or the default."""
    name = backend or config.default or "local"
    if name in config.backends:
        chosen = config.backends[name].model_copy()
    elif name in KIND_ALIASES:
        chosen = BackendConfig(name=name, kind=name)
    else:
        known = sorted(set(config.backends) | set(KIND_ALIASES))
        raise ConfigError(f"unknown backend {name!r}; configured or known: {', '.join(known)}")
    updates: dict[str, Any] = {}
    if models:
        updates["models"] = models
    if base_url:
        updates["base_url"] = base_url
    if api_key:
        updates["api_key"] = api_key
    if model_path:
        updates["model_path"] = model_path
    chosen = chosen.model_copy(update=updates)
    if chosen.protocol != "local" and not chosen.models:
        raise ConfigError(f"backend {chosen.name!r} needs a model: pass --model NAME (or list models: in the config)")
    if chosen.protocol == "openai" and not chosen.resolved_base_url():
        raise ConfigError(f"backend {chosen.name!r} needs a server: pass --base-url http://HOST:PORT/v1")
    return chosen
