"""Configuration: backends.yaml, MetaGPT config2.yaml, kind aliases, keys and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends import create_backend
from harness.backends.ollama import OllamaBackend
from harness.backends.openai_compat import OpenAICompatBackend
from harness.config import ConfigError, HarnessConfig, load_config, select_backend


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


BACKENDS_YAML = """\
default: vllm
repair: false
backends:
  ollama:
    kind: ollama
    base_url: http://10.1.2.3:11434
    models: [llama2, mistral]
  vllm:
    base_url: http://gpu:8000/v1
    models: [qwen2.5-7b]
    api_key_env: VLLM_TEST_KEY
    concurrency: 6
    timeout: 45
  factory:
    kind: llama-factory
    models: [gpt-3.5-turbo]
gate:
  metric: repaired_schema_valid
  max_drop: 1.5
"""


def test_backends_yaml_is_parsed(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "backends.yaml", BACKENDS_YAML))
    assert config.default == "vllm"
    assert config.repair is False
    assert set(config.backends) == {"ollama", "vllm", "factory"}
    vllm = config.backends["vllm"]
    assert vllm.kind == "vllm"  # kind defaults to the entry's name
    assert (vllm.protocol, vllm.concurrency, vllm.timeout, vllm.models) == ("openai", 6, 45.0, ["qwen2.5-7b"])
    assert config.backends["ollama"].models == ["llama2", "mistral"]
    assert config.gate.max_drop == 1.5
    assert config.source == str(tmp_path / "backends.yaml")


def test_default_backend_is_selected_and_cli_overrides_win(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "backends.yaml", BACKENDS_YAML))
    chosen = select_backend(config, None)
    assert chosen.name == "vllm" and chosen.resolved_base_url() == "http://gpu:8000/v1"
    overridden = select_backend(config, "vllm", models=["other"], base_url="http://x:1/v1", api_key="k-123")
    assert (overridden.models, overridden.base_url, overridden.resolved_api_key()) == (["other"], "http://x:1/v1", "k-123")
    assert config.backends["vllm"].models == ["qwen2.5-7b"]  # the loaded config is not mutated


@pytest.mark.parametrize("kind, protocol, default_url", [
    ("vllm", "openai", "http://127.0.0.1:8000/v1"),
    ("llamacpp", "openai", "http://127.0.0.1:8080/v1"),
    ("llama.cpp", "openai", "http://127.0.0.1:8080/v1"),
    ("fastchat", "openai", "http://127.0.0.1:8000/v1"),
    ("llama-factory", "openai", "http://127.0.0.1:8000/v1"),
    ("llamafactory", "openai", "http://127.0.0.1:8000/v1"),
])
def test_kind_aliases_speak_openai_with_default_urls(kind: str, protocol: str, default_url: str) -> None:
    chosen = select_backend(HarnessConfig(), kind, models=["m"])
    assert chosen.protocol == protocol
    assert chosen.resolved_base_url() == default_url
    backend = create_backend(chosen)
    assert isinstance(backend, OpenAICompatBackend)
    assert backend.base_url == default_url


def test_open_llm_and_openai_need_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for kind in ("open_llm", "openai"):
        assert select_backend(HarnessConfig(), kind, models=["m"], base_url="http://h:1/v1").protocol == "openai"
        with pytest.raises(ConfigError, match="--base-url"):
            select_backend(HarnessConfig(), kind, models=["m"])
    monkeypatch.setenv("OPENAI_BASE_URL", "http://from-env:9/v1")
    assert select_backend(HarnessConfig(), "openai", models=["m"]).resolved_base_url() == "http://from-env:9/v1"


def test_ollama_kind_defaults_to_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = select_backend(HarnessConfig(), "ollama", models=["llama2"])
    assert chosen.resolved_base_url() == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:12345")
    assert chosen.resolved_base_url() == "http://gpu-box:12345"
    backend = create_backend(chosen)
    assert isinstance(backend, OllamaBackend) and backend.base_url == "http://gpu-box:12345"


def test_metagpt_open_llm_config(tmp_path: Path) -> None:
    path = write(tmp_path / "config2.yaml", """\
llm:
  api_type: open_llm
  base_url: http://127.0.0.1:8000/v1
  model: qwen2.5-7b
  api_key: YOUR_API_KEY
  timeout: 120
""")
    config = load_config(path)
    assert config.default == "open_llm"
    backend = select_backend(config, None)
    assert backend.protocol == "openai"
    assert backend.resolved_base_url() == "http://127.0.0.1:8000/v1"
    assert backend.models == ["qwen2.5-7b"]
    assert backend.timeout == 120
    assert backend.api_key is None  # MetaGPT's placeholder is not a key
    assert config.repair is True


@pytest.mark.parametrize("url", ["http://127.0.0.1:11434/api", "http://127.0.0.1:11434/api/", "http://127.0.0.1:11434"])
def test_metagpt_ollama_base_url_api_suffix_is_stripped(tmp_path: Path, url: str) -> None:
    path = write(tmp_path / "config2.yaml", f"llm:\n  api_type: ollama\n  base_url: {url}\n  model: llama2\n")
    backend = select_backend(load_config(path), None)
    assert backend.protocol == "ollama"
    assert backend.resolved_base_url() == "http://127.0.0.1:11434"


def test_metagpt_openai_base_url_keeps_its_path(tmp_path: Path) -> None:
    path = write(tmp_path / "config2.yaml", "llm:\n  api_type: open_llm\n  base_url: http://h:1/api\n  model: m\n")
    assert select_backend(load_config(path), None).resolved_base_url() == "http://h:1/api"


@pytest.mark.parametrize("value, expected", [("false", False), ("true", True)])
def test_metagpt_repair_llm_output_is_honoured(tmp_path: Path, value: str, expected: bool) -> None:
    path = write(tmp_path / "config2.yaml",
                 f"llm:\n  api_type: ollama\n  model: llama2\nrepair_llm_output: {value}\n")
    assert load_config(path).repair is expected


def test_metagpt_unknown_api_type(tmp_path: Path) -> None:
    path = write(tmp_path / "config2.yaml", "llm:\n  api_type: azure\n  model: gpt-4\n")
    with pytest.raises(ConfigError, match="azure"):
        load_config(path)


def test_api_key_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(write(tmp_path / "backends.yaml", BACKENDS_YAML))
    vllm = config.backends["vllm"]
    assert vllm.resolved_api_key() is None
    monkeypatch.setenv("VLLM_TEST_KEY", "sk-vllm-secret")
    assert vllm.resolved_api_key() == "sk-vllm-secret"
    assert "sk-vllm-secret" not in repr(select_backend(config, "vllm", api_key="sk-other-secret"))
    # an openai-protocol backend without api_key_env falls back to OPENAI_API_KEY; ollama does not
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-env")
    assert config.backends["factory"].resolved_api_key() == "sk-openai-env"
    assert config.backends["ollama"].resolved_api_key() is None
    assert create_backend(config.backends["factory"]).api_key == "sk-openai-env"


def test_unknown_kind_in_file(tmp_path: Path) -> None:
    path = write(tmp_path / "backends.yaml", "backends:\n  mine:\n    kind: tgi\n    models: [m]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "mine" in message and "tgi" in message and "vllm" in message


def test_unknown_backend_name_lists_known(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "backends.yaml", BACKENDS_YAML))
    with pytest.raises(ConfigError) as info:
        select_backend(config, "nosuch")
    assert "nosuch" in str(info.value) and "factory" in str(info.value) and "ollama" in str(info.value)


def test_misspelt_backend_field_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "backends.yaml", "backends:\n  vllm:\n    modles: [m]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "modles" in str(info.value)


def test_backend_entry_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="backends.vllm must be a mapping"):
        load_config(write(tmp_path / "backends.yaml", "backends:\n  vllm: http://x/v1\n"))


def test_missing_model_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--model"):
        select_backend(HarnessConfig(), "ollama")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "backends.yaml", "backends:\n  vllm:\n    models: [a, b\n  x: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:4" in str(info.value)


def test_missing_config_file_and_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")
    # no path and no config/backends.yaml in the working directory: nothing configured
    assert load_config(None).backends == {}
    write(tmp_path / "config" / "backends.yaml", BACKENDS_YAML)  # the autouse fixture made tmp_path the cwd
    assert load_config(None).default == "vllm"


def test_non_mapping_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path / "c.yaml", "- a\n- b\n"))
