"""LLM clients behind one protocol, and ``make_llm(spec)`` to pick one from a string.

Spec forms (from the argument, else ``$VISTRACE_LLM``, else ``local``):

- ``local``                      the default in-process model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M)
- ``local:qwen-0.5b``, ``local:qwen-1.5b``   a registered GGUF model file (``vistrace models fetch NAME``)
- ``local:/path/model.gguf``     any GGUF chat model file
- ``openai:URL#MODEL``           an OpenAI-compatible server, e.g. ``openai:http://127.0.0.1:8080/v1#qwen``
                                 (API key from ``$VISTRACE_LLM_API_KEY`` or ``$OPENAI_API_KEY``)

Importing this package is light: httpx and llama_cpp are imported on first use.
"""

from __future__ import annotations

import os
from typing import Any

from vistrace.errors import InputError

from .base import (
    LLM,
    Completion,
    LLMAuthError,
    LLMError,
    LLMNotFound,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
    LLMUnavailable,
    Message,
)
from .local import LocalLlama
from .openai import OpenAICompatible

LLM_ENV = "VISTRACE_LLM"
DEFAULT_SPEC = "local"
DEFAULT_LOCAL = "qwen-0.5b"
SPEC_FORMS = ("local", "local:qwen-0.5b", "local:qwen-1.5b", "local:/path/model.gguf", "openai:URL#MODEL")

__all__ = [
    "LLM",
    "SPEC_FORMS",
    "Completion",
    "LLMAuthError",
    "LLMError",
    "LLMNotFound",
    "LLMRateLimited",
    "LLMServerError",
    "LLMTimeout",
    "LLMUnavailable",
    "LocalLlama",
    "Message",
    "OpenAICompatible",
    "make_llm",
]


def _bad(spec: str, why: str) -> InputError:
    return InputError(f"LLM spec '{spec}' is not valid: {why}",
                      hint="forms: " + ", ".join(SPEC_FORMS) + " (e.g. openai:http://127.0.0.1:8080/v1#qwen)")


def _local_names() -> list[str]:
    from vistrace.tools import models

    return sorted(n for n, s in models.known_models().items() if s.members[0].endswith(".gguf"))


def make_llm(spec: str | LLM | None = None, **options: Any) -> LLM:
    """The LLM a spec string names (see the module doc); ``options`` go to the client's constructor
    (e.g. ``n_ctx``/``n_threads`` for local models, ``timeout``/``retries``/``vision`` for servers).
    An LLM object is returned as it is. A spec that fits no form is an InputError listing the forms."""
    if spec is not None and not isinstance(spec, str):
        if isinstance(spec, LLM):
            return spec
        raise _bad(repr(spec), f"expected a string, got {type(spec).__name__}")
    source = spec if spec is not None else os.environ.get(LLM_ENV) or DEFAULT_SPEC
    text = source.strip()
    kind, sep, rest = text.partition(":")
    kind = kind.lower()
    if kind == "local":
        if sep and not rest.strip():
            raise _bad(source, "nothing after 'local:'")
        target = rest.strip() or DEFAULT_LOCAL
        if "/" in target or "\\" in target or target.lower().endswith(".gguf") or target.startswith("~"):
            if not target.lower().endswith(".gguf"):
                raise _bad(source, f"a local model file must be a .gguf file, got '{target}'")
            return LocalLlama(target, **options)
        names = _local_names()
        if target not in names:
            raise _bad(source, f"unknown local model '{target}' (known: {', '.join(names)}; or give a .gguf path)")
        return LocalLlama.named(target, **options)
    if kind == "openai":
        url, hash_, model = rest.strip().rpartition("#")
        if not hash_:
            raise _bad(source, "an OpenAI-compatible spec needs '#MODEL' after the URL")
        if not url.startswith(("http://", "https://")):
            raise _bad(source, f"the server URL must start with http:// or https://, got '{url}'")
        if not model.strip():
            raise _bad(source, "the model name after '#' is empty")
        return OpenAICompatible(url, model.strip(), **options)
    raise _bad(source, f"unknown kind '{kind}'" if sep else "expected 'local...' or 'openai:URL#MODEL'")
