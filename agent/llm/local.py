"""A GGUF chat model run in-process by llama.cpp (llama-cpp-python): offline, no server.

The model's own chat template (stored in the GGUF) formats the messages. A GBNF ``grammar`` constrains
decoding (compiled once per grammar text); a ``json_schema`` is turned into a grammar by llama-cpp-python.
The weights load once per (file, context size) into the process-wide model cache and are shared by
every ``LocalLlama`` on that file; calls on one loaded model are serialized (a llama.cpp context is
not thread-safe). At temperature 0 decoding is greedy, so the same prompt gives the same answer.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import Completion, LLMError, LLMUnavailable, Message

PIP_EXTRA = "vistrace[agent]"
INSTALL_HINT = (f"install llama-cpp-python: pip install '{PIP_EXTRA}' (`make setup` builds its wheel once, "
                "non-native, so it runs on any x86-64 CPU with AVX2)")
KV_BYTES_PER_TOKEN = 64 * 1024   # rough KV-cache size per context token, for the model cache's memory budget


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise LLMUnavailable(f"the in-process LLM needs llama-cpp-python, which is not importable here ({exc})",
                             hint=INSTALL_HINT) from exc
    return llama_cpp


def _default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


class _Loaded:
    """One loaded llama.cpp model, the lock that serializes its use, and its compiled grammars."""

    def __init__(self, llama: Any):
        self.llama = llama
        self.lock = threading.Lock()
        self.grammars: OrderedDict[str, Any] = OrderedDict()
        self.formatter: Any = None   # the GGUF's chat template, for prompts continued from a prefix
        _LIVE.add(self)


_LIVE: weakref.WeakSet[_Loaded] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Free loaded models while llama_cpp is still importable (its finalizer fails at interpreter teardown)."""
    for loaded in list(_LIVE):
        try:
            loaded.llama.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class LocalLlama:
    """A local GGUF chat model. ``model_path``: the .gguf file; ``name``: how traces call it."""

    supports_grammar = True
    supports_json_schema = True
    supports_images = False
    supports_prefill = True    # complete(..., prefix=...) continues the assistant's answer
    GRAMMAR_CACHE = 32   # compiled grammars kept per model

    def __init__(self, model_path: str | os.PathLike, n_ctx: int = 4096, n_threads: int | None = None, seed: int = 0,
                 *, name: str | None = None, model_file: str | None = None):
        """``model_file``: the name of a registered model file (``qwen-0.5b``) whose sha256 is verified
        (once per process) before the first load; None for a GGUF the user brings."""
        self.model_path = Path(model_path).expanduser()
        self.n_ctx = int(n_ctx)
        self.n_threads = n_threads or _default_threads()
        self.seed = int(seed)
        self.model_file = model_file
        self.name = name or (f"local:{model_file}" if model_file else f"local:{self.model_path}")
        self.fetch_hint = (f"run `vistrace models fetch {model_file}`" if model_file else
                           "give the path of a .gguf chat model, or run `vistrace models fetch qwen-0.5b` "
                           "and use --llm local")

    @classmethod
    def named(cls, model_file: str, **kw) -> LocalLlama:
        """The registered model file ``model_file`` (e.g. ``qwen-0.5b``) from the models folder."""
        from vistrace.tools import models

        spec = models.known_models().get(model_file)
        if spec is None or not spec.members[0].endswith(".gguf"):
            known = sorted(n for n, s in models.known_models().items() if s.members[0].endswith(".gguf"))
            raise LLMUnavailable(f"'{model_file}' is not a known local LLM", hint="known: " + ", ".join(known))
        return cls(spec.path(), model_file=model_file, **kw)

    def __repr__(self) -> str:
        return f"LocalLlama({str(self.model_path)!r}, n_ctx={self.n_ctx})"

    # --- loading --------------------------------------------------------------------------------

    def _loaded(self) -> _Loaded:
        from vistrace.tools.model_cache import MODELS

        if not self.model_path.is_file():
            raise LLMUnavailable(f"model file {self.model_path} is missing", hint=self.fetch_hint)
        if self.model_file:
            from vistrace.tools import models

            from vistrace.errors import BackendUnavailable

            try:
                models.require(self.model_file)
            except BackendUnavailable as exc:
                raise LLMUnavailable(exc.message, hint=exc.fix) from exc
        llama_cpp = _llama_cpp()
        key = f"llama:{self.model_path.resolve()}:{self.n_ctx}"

        def load() -> _Loaded:
            try:
                llama = llama_cpp.Llama(model_path=str(self.model_path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                        seed=self.seed, verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise LLMUnavailable(f"llama.cpp could not load {self.model_path}: {exc}",
                                     hint=f"is it a GGUF file? {self.fetch_hint}") from exc
            return _Loaded(llama)

        size = self.model_path.stat().st_size + self.n_ctx * KV_BYTES_PER_TOKEN
        return MODELS.get(key, load, size)

    def load(self) -> LocalLlama:
        """Load the weights now (otherwise the first call does); returns self."""
        self._loaded()
        return self

    def _grammar(self, loaded: _Loaded, text: str):
        """The compiled GBNF grammar for ``text`` (cached by text); LLMError naming the problem when it is invalid."""
        if text in loaded.grammars:
            loaded.grammars.move_to_end(text)
            return loaded.grammars[text]
        llama_cpp = _llama_cpp()
        # llama-cpp-python parses the grammar only when sampling starts, and a grammar that does not parse
        # leaves a null sampler there (a crash). So parse it here first with llama.cpp's own parser.
        vocab = llama_cpp.llama_model_get_vocab(loaded.llama.model)
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode("utf-8"), b"root")
        if not sampler:
            first = text.strip().splitlines()[0][:160] if text.strip() else "(empty)"
            raise LLMError(f"{self.name}: the GBNF grammar does not parse (llama.cpp printed the reason on stderr: "
                           f"a syntax error, an undefined rule, or no 'root' rule)", hint=f"its first line: {first}")
        llama_cpp.llama_sampler_free(sampler)
        grammar = llama_cpp.LlamaGrammar.from_string(text, verbose=False)
        loaded.grammars[text] = grammar
        while len(loaded.grammars) > self.GRAMMAR_CACHE:
            loaded.grammars.popitem(last=False)
        return grammar

    def _kwargs(self, loaded: _Loaded, messages: list[Message], grammar, json_schema, max_tokens, temperature,
                stop) -> dict[str, Any]:
        kw: dict[str, Any] = {"messages": [{"role": m.role, "content": m.content} for m in messages],
                              "max_tokens": max_tokens, "temperature": temperature, "seed": self.seed}
        if stop:
            kw["stop"] = list(stop)
        if grammar:
            kw["grammar"] = self._grammar(loaded, grammar)
        elif json_schema:   # llama-cpp-python's converter to GBNF, then the same checked, cached path
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            try:
                text = json_schema_to_gbnf(json.dumps(json_schema))
            except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
                raise LLMError(f"{self.name}: the JSON schema cannot be turned into a grammar: {exc}") from exc
            kw["grammar"] = self._grammar(loaded, text)
        return kw

    # --- the protocol ---------------------------------------------------------------------------

    def _prompt(self, loaded: _Loaded, messages: list[Message]) -> tuple[str, list[str]]:
        """The chat rendered by the model's own template, ready for the assistant's answer; and its stop texts."""
        if loaded.formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            llama = loaded.llama
            template = (llama.metadata or {}).get("tokenizer.chat_template")
            if not template:
                raise LLMError(f"{self.name}: the GGUF file has no chat template (tokenizer.chat_template)",
                               hint="use a chat/instruct model")

            def token_text(tid: int) -> str:
                return llama.detokenize([tid], special=True).decode("utf-8", errors="ignore") if tid >= 0 else ""

            loaded.formatter = Jinja2ChatFormatter(template=template, eos_token=token_text(llama.token_eos()),
                                                   bos_token=token_text(llama.token_bos()),
                                                   stop_token_ids=[llama.token_eos()])
        out = loaded.formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        stops = out.stop if isinstance(out.stop, list) else [out.stop] if out.stop else []
        return out.prompt, stops

    def complete(self, messages: list[Message], *, grammar: str | None = None, json_schema: dict | None = None,
                 max_tokens: int = 512, temperature: float = 0.0, stop: list[str] | None = None,
                 prefix: str | None = None, seed: int | None = None) -> Completion:
        """``prefix``: the start of the assistant's answer, which the model continues (the text returned
        is only the continuation); ``seed``: this call's sampling seed (default: the client's)."""
        loaded = self._loaded()
        with loaded.lock:
            kw = self._kwargs(loaded, messages, grammar, json_schema, max_tokens, temperature, stop)
            if seed is not None:
                kw["seed"] = int(seed)
            try:
                if prefix is None:
                    out = loaded.llama.create_chat_completion(**kw)
                else:
                    prompt, stops = self._prompt(loaded, messages)
                    kw.pop("messages")
                    kw["stop"] = list(kw.get("stop") or []) + stops
                    out = loaded.llama.create_completion(prompt=prompt + prefix, **kw)
            except ValueError as exc:   # e.g. the prompt is longer than the context
                raise LLMError(f"{self.name} could not answer: {exc}",
                               hint=f"shorten the prompt or raise n_ctx (now {self.n_ctx})") from exc
        choice = out["choices"][0]
        usage = {k: int(v) for k, v in (out.get("usage") or {}).items() if isinstance(v, (int, float))}
        text = choice["message"].get("content") if "message" in choice else choice.get("text")
        return Completion(text=text or "", finish_reason=choice.get("finish_reason") or "stop",
                          model=self.name, usage=usage)

    def stream(self, messages: list[Message], *, grammar: str | None = None, json_schema: dict | None = None,
               max_tokens: int = 512, temperature: float = 0.0, stop: list[str] | None = None) -> Iterator[str]:
        loaded = self._loaded()
        with loaded.lock:
            kw = self._kwargs(loaded, messages, grammar, json_schema, max_tokens, temperature, stop)
            try:
                chunks = loaded.llama.create_chat_completion(stream=True, **kw)
                for chunk in chunks:
                    piece = chunk["choices"][0].get("delta", {}).get("content")
                    if piece:
                        yield piece
            except ValueError as exc:
                raise LLMError(f"{self.name} could not answer: {exc}",
                               hint=f"shorten the prompt or raise n_ctx (now {self.n_ctx})") from exc
