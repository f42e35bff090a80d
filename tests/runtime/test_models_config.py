"""Choosing the model: the policy's ``models:`` section, the environment, and where keys come from."""

from __future__ import annotations

import pytest

from mergegate.core.policy import ModelsConfig, PolicyError, parse_policy
from mergegate.runtime.models import NOT_CONFIGURED, ModelConfigError, api_key, build_model, resolve_model

POLICY = """\
models:
  default:
    provider: openai-compatible
    base_url: http://127.0.0.1:11434/v1
    model: qwen2.5-coder
    api_key_env: OLLAMA_API_KEY
  agents:
    llm-review: {provider: anthropic, model: claude-sonnet-4-5}
  prices:
    qwen2.5-coder: {input_per_mtok: 0, output_per_mtok: 0}
"""


def config(text: str = POLICY) -> ModelsConfig:
    return parse_policy(text).models


def test_no_model_is_configured_by_default_or_by_a_key_alone():
    assert resolve_model(ModelsConfig(), "llm-review", environ={}) is None
    assert resolve_model(ModelsConfig(), "llm-review", environ={"OPENAI_API_KEY": "sk-x"}) is None
    assert "MERGEGATE_MODEL" in NOT_CONFIGURED and "models.default" in NOT_CONFIGURED


def test_policy_default_and_per_agent_override():
    default = resolve_model(config(), "other", environ={})
    assert (default.provider, default.model, default.base_url) == (
        "openai-compatible",
        "qwen2.5-coder",
        "http://127.0.0.1:11434/v1",
    )
    assert default.source == "models.default"
    review = resolve_model(config(), "llm-review", environ={})
    assert (review.provider, review.model, review.base_url, review.source) == (
        "anthropic",
        "claude-sonnet-4-5",
        None,
        "models.agents.llm-review",
    )


def test_the_environment_wins_field_by_field():
    env = {"MERGEGATE_MODEL": "qwen2.5-coder:32b", "MERGEGATE_MODEL_BASE_URL": "http://gpu-box:8000/v1"}
    choice = resolve_model(config(), "other", environ=env)
    # An Ollama tag keeps its colon; the provider and key variable stay the policy's.
    assert (choice.provider, choice.model, choice.base_url, choice.api_key_env) == (
        "openai-compatible",
        "qwen2.5-coder:32b",
        "http://gpu-box:8000/v1",
        "OLLAMA_API_KEY",
    )
    assert choice.source.startswith("MERGEGATE_MODEL (over models.default)")
    # Another provider drops the policy's endpoint and key variable: they belong to the old one.
    other = resolve_model(config(), "other", environ={"MERGEGATE_MODEL": "anthropic:claude-opus-4-1"})
    assert (other.provider, other.model, other.base_url, other.api_key_env) == (
        "anthropic",
        "claude-opus-4-1",
        None,
        None,
    )
    only_env = resolve_model(ModelsConfig(), None, environ={"MERGEGATE_MODEL": "gpt-4o"})
    assert (only_env.provider, only_env.model, only_env.source) == ("openai-compatible", "gpt-4o", "MERGEGATE_MODEL")


def test_bad_environment_values_are_errors_that_do_not_echo_credentials():
    with pytest.raises(ModelConfigError, match="MERGEGATE_MODEL_PROVIDER"):
        resolve_model(ModelsConfig(), None, environ={"MERGEGATE_MODEL": "m", "MERGEGATE_MODEL_PROVIDER": "bogus"})
    with pytest.raises(ModelConfigError) as info:
        resolve_model(
            ModelsConfig(), None, environ={"MERGEGATE_MODEL": "m", "MERGEGATE_MODEL_BASE_URL": "https://u:hunter2@h/v1"}
        )
    assert "hunter2" not in str(info.value)


def test_keys_are_read_from_the_environment_in_order_and_never_held():
    choice = resolve_model(config(), "other", environ={})
    assert api_key(choice, {}) is None
    assert api_key(choice, {"OPENAI_API_KEY": "c"}) == "c"
    assert api_key(choice, {"OPENAI_API_KEY": "c", "MERGEGATE_MODEL_API_KEY": "b"}) == "b"
    assert api_key(choice, {"OPENAI_API_KEY": "c", "MERGEGATE_MODEL_API_KEY": "b", "OLLAMA_API_KEY": "a"}) == "a"
    secret = "sk-proj-" + "NeverHeldInTheChoice" + "0123456789"
    assert api_key(choice, {"OLLAMA_API_KEY": secret}) == secret
    assert secret not in repr(resolve_model(config(), "other", environ={"OLLAMA_API_KEY": secret}))
    # A local OpenAI-compatible server needs no key; a hosted endpoint does.
    assert build_model(choice, {}).model_name == "qwen2.5-coder"
    hosted = resolve_model(ModelsConfig(), None, environ={"MERGEGATE_MODEL": "openai:gpt-4o"})
    with pytest.raises(
        ModelConfigError, match=r"no API key for openai:gpt-4o: set MERGEGATE_MODEL_API_KEY or OPENAI_API_KEY"
    ):
        build_model(hosted, {})
    anthropic = resolve_model(config(), "llm-review", environ={})
    assert type(build_model(anthropic, {"ANTHROPIC_API_KEY": "sk-ant"})).__name__ == "AnthropicModel"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: {default: {model: m, api_key: sk-live-123}}", "credentials are never stored in the policy"),
        ("models: {default: {model: m, api_key_env: sk-live-123}}", "must be the name of an environment variable"),
        ("models: {default: {model: m, base_url: 'http://user:pw@h/v1'}}", "without credentials"),
        ("models: {default: {model: m, provider: gemini}}", "models.default.provider"),
        ("models: {default: {model: m}, prices: {m: {input_per_mtok: -1, output_per_mtok: 0}}}", "greater than"),
        ("models: {defualt: {model: m}}", "models.defualt: unknown key"),
    ],
)
def test_policy_errors_name_the_key_and_line(text, message):
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert message in str(info.value)
    assert "line 1" in str(info.value)
    assert "sk-live-123" not in str(info.value)  # errors never echo a credential
