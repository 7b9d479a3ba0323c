"""The one small protocol every LLM client speaks: chat messages in, text (or a stream of text) out.

Clients: :class:`~vistrace.agent.llm.openai.OpenAICompatible` (any OpenAI-compatible server over
httpx) and :class:`~vistrace.agent.llm.local.LocalLlama` (llama.cpp in-process). ``make_llm(spec)``
picks one from a spec string (``local``, ``local:qwen-1.5b``, ``local:/path/model.gguf``,
``openai:URL#MODEL``). Constraints are optional and each client says which it supports: a GBNF
``grammar`` (llama.cpp) or a ``json_schema`` (structured output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Protocol, runtime_checkable

from vistrace.errors import VistraceError

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Message:
    """One chat message. ``images`` are local image paths or ``data:`` URLs (sent only to vision models)."""

    role: Role
    content: str
    images: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.images:
            d["images"] = list(self.images)
        return d


@dataclass(frozen=True)
class Completion:
    """What a model answered, and why it stopped ("stop", "length", ...)."""

    text: str
    finish_reason: str = "stop"
    model: str = ""
    usage: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class LLM(Protocol):
    """A chat model. ``name`` identifies it in traces (e.g. ``local:qwen-0.5b``)."""

    name: str
    supports_grammar: bool
    supports_json_schema: bool
    supports_images: bool

    def complete(self, messages: list[Message], *, grammar: str | None = None, json_schema: dict | None = None,
                 max_tokens: int = 512, temperature: float = 0.0, stop: list[str] | None = None) -> Completion:
        """The whole answer at once."""
        ...

    def stream(self, messages: list[Message], *, grammar: str | None = None, json_schema: dict | None = None,
               max_tokens: int = 512, temperature: float = 0.0, stop: list[str] | None = None) -> Iterator[str]:
        """The answer as text pieces, as they are generated."""
        ...


class LLMError(VistraceError):
    """An LLM call failed; the message names the model/server and what to do."""


class LLMUnavailable(LLMError):
    """The model cannot be used here: weights missing, package missing, or server unreachable."""


class LLMAuthError(LLMError):
    """The server refused the credentials (HTTP 401/403)."""


class LLMNotFound(LLMError):
    """The server does not know the model or endpoint (HTTP 404)."""


class LLMRateLimited(LLMError):
    """The server asked to slow down (HTTP 429) and retries ran out."""


class LLMServerError(LLMError):
    """The server failed (HTTP 5xx) and retries ran out."""


class LLMTimeout(LLMError):
    """The server did not answer in time."""
