"""The base of backends that answer a tool with an LLM (local llama.cpp or an OpenAI-compatible server).

Which LLM: the one given to the constructor (a spec string or a client), else the backend's setting
``llm`` (``[backends.<name>] llm = "local:qwen-1.5b"``, env ``VISTRACE_<NAME>_LLM``), else
``$VISTRACE_LLM``, else ``local`` (Qwen2.5-Coder-0.5B-Instruct GGUF). The LLM's name is the
backend's ``model``, so traces and the result cache name it. ``availability`` loads no weights.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from vistrace.settings import backend_settings, env_name

from ..backends import Availability, Backend

_LLMS: dict[str, Any] = {}


def llm_spec(settings_name: str, explicit: str | None = None) -> str:
    """The LLM spec: the explicit one, the backend's setting ``llm``, ``$VISTRACE_LLM``, else ``local``."""
    if explicit:
        return explicit
    value = backend_settings(settings_name).get("llm")
    if value:
        return str(value)
    return os.environ.get("VISTRACE_LLM") or "local"


def get_llm(spec: str):
    """The LLM client for ``spec`` (one per spec and models folder, so a changed ``VISTRACE_HOME`` is
    seen; the weights themselves are shared by the model cache)."""
    from vistrace.config import models_dir

    key = f"{spec}@{models_dir()}"
    if key not in _LLMS:
        from vistrace.agent.llm import make_llm

        _LLMS[key] = make_llm(spec)
    return _LLMS[key]


def complete(llm, pairs: list[tuple[str, str]], **kw) -> str:
    """The LLM's reply to (role, text) messages."""
    from vistrace.agent.llm import Message

    return llm.complete([Message(role, text) for role, text in pairs], **kw).text


class LLMBackend(Backend):
    """A backend whose answers an LLM writes; subclasses set ``tool``, ``name`` and ``settings_name``."""

    settings_name = ""
    priority = 0  # a configured specialised model wins
    needs = ""    # what else the backend uses, for the availability reason (e.g. "experts + ")

    def __init__(self, llm: Any = None):
        """``llm``: a spec string, an LLM client object, or None to read the setting / $VISTRACE_LLM at call time."""
        self.llm_choice = llm

    @property
    def spec(self) -> str:
        if self.llm_choice is not None and not isinstance(self.llm_choice, str):
            return str(getattr(self.llm_choice, "name", type(self.llm_choice).__name__))
        return llm_spec(self.settings_name or self.name, self.llm_choice)

    @property
    def model(self) -> str:  # type: ignore[override] - the LLM in force, so traces and the cache key name it
        try:
            return self.llm().name
        except Exception:  # noqa: BLE001 - an invalid spec is reported by availability()
            return self.spec

    def availability(self) -> Availability:
        if self.llm_choice is not None and not isinstance(self.llm_choice, str):
            return Availability(True, f"{self.needs}the given LLM client {self.spec}")
        spec = self.spec
        env = env_name(self.settings_name or self.name, "llm")
        try:
            llm = get_llm(spec)
        except Exception as exc:  # noqa: BLE001 - InputError for a bad spec, LLMUnavailable for a missing file
            return Availability(False, f"LLM '{spec}' cannot be used: {getattr(exc, 'message', exc)}",
                                getattr(exc, "hint", None) or f"{env}=local")
        path = getattr(llm, "model_path", None)
        if path is not None:
            if importlib.util.find_spec("llama_cpp") is None:
                return Availability(False, "llama-cpp-python is not installed (the local LLM needs it)",
                                    "pip install 'vistrace[agent]'")
            if not path.is_file():
                return Availability(False, f"the local LLM file {path} is missing", getattr(llm, "fetch_hint", None))
        return Availability(True, f"{self.needs}LLM {llm.name}")

    def llm(self):
        if self.llm_choice is not None and not isinstance(self.llm_choice, str):
            return self.llm_choice
        return get_llm(self.spec)

    def grammar_for(self, grammar: str) -> str | None:
        """``grammar`` when the LLM client supports GBNF constraints, else None (said in ``suits``)."""
        return grammar if getattr(self.llm(), "supports_grammar", False) else None
