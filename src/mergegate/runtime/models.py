"""Which model an LLM agent talks to: the policy's ``models:`` section and the environment.

Two kinds of backend, both through pydantic-ai:

- ``openai-compatible`` (and ``openai``): the Chat Completions protocol, which OpenAI,
  vLLM, Ollama, the llama.cpp server, DeepSeek, Qwen and most gateways speak — a base URL
  and a model name;
- ``anthropic``: Anthropic's Messages API.

**Precedence** (the first that says something wins, field by field):

1. the environment of the process running mergegate — ``MERGEGATE_MODEL`` (``model`` or
   ``provider:model``, e.g. ``anthropic:claude-sonnet-4-5``), ``MERGEGATE_MODEL_PROVIDER``,
   ``MERGEGATE_MODEL_BASE_URL``: the operator knows where its endpoint is;
2. ``models.agents.<agent>`` in the base branch's policy;
3. ``models.default``.

A model is *configured* when ``MERGEGATE_MODEL`` is set or the policy names one; an API
key alone configures nothing. Without one, LLM agents are skipped (never a fake result)
and nothing touches the network.

**API keys** never come from the policy (it is committed to the repository). They are
read from the environment when a run starts: the variable named by ``api_key_env``, else
``MERGEGATE_MODEL_API_KEY``, else the provider's usual one (``OPENAI_API_KEY``,
``ANTHROPIC_API_KEY``). They go to the SDK client and nowhere else: not into
``ModelChoice``, not into the audit log.

The SDKs' own retries are switched off (``max_retries=0``): ``model_guard`` retries
transient failures itself, with one bounded policy whatever the provider.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mergegate.core.policy import ModelEndpoint, ModelsConfig

ENV_MODEL = "MERGEGATE_MODEL"
ENV_PROVIDER = "MERGEGATE_MODEL_PROVIDER"
ENV_BASE_URL = "MERGEGATE_MODEL_BASE_URL"
ENV_API_KEY = "MERGEGATE_MODEL_API_KEY"

PROVIDERS = ("openai-compatible", "openai", "anthropic")
PROVIDER_KEY_ENV = {"openai-compatible": "OPENAI_API_KEY", "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

NOT_CONFIGURED = "no model configured (set MERGEGATE_MODEL or models.default in .mergegate.yml)"

#: Sent as the key to an OpenAI-compatible server that needs none (Ollama, llama.cpp, vLLM):
#: the SDK requires some value, and must not go looking in the environment on its own.
NO_KEY = "no-key"


class ModelConfigError(ValueError):
    """The model configuration cannot be used (the run reports an error, naming what to fix)."""


@dataclass(frozen=True)
class ModelChoice:
    """The resolved backend for one agent run. Holds the *name* of the key's variable, never the key."""

    provider: str
    model: str
    base_url: str | None
    api_key_env: str | None
    timeout_s: float
    max_retries: int
    retry_base_s: float
    max_output_tokens: int | None
    #: Where the choice came from, for the audit log (``MERGEGATE_MODEL``, ``models.default`` …).
    source: str

    @property
    def label(self) -> str:
        where = f" at {self.base_url}" if self.base_url else ""
        return f"{self.provider}:{self.model}{where}"

    @property
    def price_provider(self) -> str:
        return "anthropic" if self.provider == "anthropic" else "openai"


def _split(value: str, default_provider: str) -> tuple[str, str]:
    """``provider:model`` or ``model`` (Ollama tags such as ``qwen2.5-coder:7b`` stay whole)."""
    head, sep, rest = value.partition(":")
    if sep and head in PROVIDERS and rest:
        return head, rest
    return default_provider, value


def resolve_model(
    models: ModelsConfig, agent: str | None = None, environ: Mapping[str, str] | None = None
) -> ModelChoice | None:
    """The backend for ``agent``, or ``None`` when no model is configured (see the precedence above)."""
    env = os.environ if environ is None else environ
    endpoint: ModelEndpoint | None = None
    source = ""
    if agent and agent in models.agents:
        endpoint, source = models.agents[agent], f"models.agents.{agent}"
    elif models.default is not None:
        endpoint, source = models.default, "models.default"
    env_model = env.get(ENV_MODEL, "").strip()
    if endpoint is None and not env_model:
        return None

    fields: dict[str, Any] = (
        endpoint.model_dump() if endpoint is not None else ModelEndpoint(model="unset").model_dump()
    )
    env_provider = env.get(ENV_PROVIDER, "").strip()
    if env_provider and env_provider not in PROVIDERS:
        raise ModelConfigError(f"{ENV_PROVIDER}={env_provider!r}: expected one of {', '.join(PROVIDERS)}")
    if env_model:
        provider, name = _split(env_model, env_provider or fields["provider"])
        if endpoint is not None and provider != endpoint.provider:
            # Another provider: the policy's endpoint and key variable belong to the old one.
            fields.update(base_url=None, api_key_env=None)
        fields.update(provider=provider, model=name)
        source = ENV_MODEL + (f" (over {source})" if source else "")
    elif env_provider:
        fields["provider"] = env_provider
    base_url = env.get(ENV_BASE_URL, "").strip()
    if base_url:
        fields["base_url"] = base_url
        source += f", {ENV_BASE_URL}"
    try:
        checked = ModelEndpoint.model_validate(fields)
    except ValidationError as exc:
        # Messages only: the input may be a URL with credentials in it.
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'model'}: {e['msg']}" for e in exc.errors())
        raise ModelConfigError(f"model configuration from {source}: {problems}") from None
    return ModelChoice(
        provider=checked.provider,
        model=checked.model,
        base_url=checked.base_url,
        api_key_env=checked.api_key_env,
        timeout_s=checked.timeout_s,
        max_retries=checked.max_retries,
        retry_base_s=checked.retry_base_s,
        max_output_tokens=checked.max_output_tokens,
        source=source,
    )


def api_key(choice: ModelChoice, environ: Mapping[str, str] | None = None) -> str | None:
    """The key for ``choice``, read now from the environment (``None``: none is set)."""
    env = os.environ if environ is None else environ
    for name in (choice.api_key_env, ENV_API_KEY, PROVIDER_KEY_ENV[choice.provider]):
        if name and env.get(name):
            return env[name]
    return None


def key_hint(choice: ModelChoice) -> str:
    names = [n for n in (choice.api_key_env, ENV_API_KEY, PROVIDER_KEY_ENV[choice.provider]) if n]
    return " or ".join(dict.fromkeys(names))


def build_model(choice: ModelChoice, environ: Mapping[str, str] | None = None, http_client: Any = None):
    """A pydantic-ai model for ``choice``, with the key read from the environment now.

    Imported lazily: ``mergegate check`` without a model never loads the SDKs.
    """
    key = api_key(choice, environ)
    needs_key = choice.provider == "anthropic" or choice.base_url is None
    if key is None and needs_key:
        raise ModelConfigError(f"no API key for {choice.label}: set {key_hint(choice)}")
    if choice.provider == "anthropic":
        from anthropic import AsyncAnthropic
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        client = AsyncAnthropic(
            api_key=key, base_url=choice.base_url, max_retries=0, timeout=choice.timeout_s, http_client=http_client
        )
        return AnthropicModel(choice.model, provider=AnthropicProvider(anthropic_client=client))

    from openai import AsyncOpenAI
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    client = AsyncOpenAI(
        api_key=key or NO_KEY,
        base_url=choice.base_url,
        max_retries=0,
        timeout=choice.timeout_s,
        http_client=http_client,
    )
    return OpenAIChatModel(choice.model, provider=OpenAIProvider(openai_client=client))
