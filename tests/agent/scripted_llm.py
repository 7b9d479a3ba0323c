"""TEST DOUBLE — a scripted LLM for deterministic agent-graph tests.  Never used by product code.

``ScriptedLLM(replies)`` answers the n-th call with ``replies[n]``: a ``str``, ``bytes`` (for
non-UTF-8 output), a :class:`~vistrace.agent.llm.base.Completion` (to set ``finish_reason``, e.g.
``"length"`` for a truncated answer) or an exception instance (raised). With ``supports_prefill`` it
takes ``prefix=`` like the local model (the typed planner then asks for one statement per call).  It records every call's
messages and constraints so tests can assert what the planner was told (e.g. the check problems of
the previous attempt) and whether the grammar was passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from vistrace.agent.llm.base import Completion, Message


@dataclass
class Call:
    messages: list[Message]
    grammar: str | None
    json_schema: dict | None
    max_tokens: int
    streamed: bool
    prefix: str | None = None

    @property
    def last_user(self) -> str:
        return next(m.content for m in reversed(self.messages) if m.role == "user")


@dataclass
class ScriptedLLM:
    replies: list[Any]
    name: str = "scripted-test-double"
    supports_grammar: bool = False
    supports_json_schema: bool = False
    supports_images: bool = False
    supports_prefill: bool = False
    calls: list[Call] = field(default_factory=list)

    def _next(self, messages, grammar, json_schema, max_tokens, streamed, prefix=None) -> Any:
        self.calls.append(Call(list(messages), grammar, json_schema, max_tokens, streamed, prefix))
        if len(self.calls) > len(self.replies):
            raise AssertionError(f"the scripted LLM was called {len(self.calls)} times; "
                                 f"only {len(self.replies)} replies were scripted")
        reply = self.replies[len(self.calls) - 1]
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def complete(self, messages: list[Message], *, grammar: str | None = None, json_schema: dict | None = None,
                 max_tokens: int = 512, temperature: float = 0.0, stop: list[str] | None = None,
                 prefix: str | None = None, seed: int | None = None) -> Completion:
        if prefix is not None and not self.supports_prefill:
            raise AssertionError("prefix passed to a scripted LLM without supports_prefill")
        reply = self._next(messages, grammar, json_schema, max_tokens, False, prefix)
        if isinstance(reply, Completion):
            return reply
        if isinstance(reply, bytes):
            return Completion(reply, model=self.name)  # type: ignore[arg-type] - a broken client's output
        return Completion(str(reply), model=self.name)

    def stream(self, messages: list[Message], *, grammar: str | None = None, json_schema: dict | None = None,
               max_tokens: int = 512, temperature: float = 0.0, stop: list[str] | None = None) -> Iterator[Any]:
        reply = self._next(messages, grammar, json_schema, max_tokens, True)
        text = reply.text if isinstance(reply, Completion) else reply
        step = 7
        for i in range(0, len(text), step):  # pieces of a few characters, like tokens
            yield text[i:i + step]
