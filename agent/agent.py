"""The public agent: ``vistrace.Agent(llm=...)``, ``agent.ask(images, question)``, ``aask``, ``stream``.

>>> agent = vistrace.Agent()                       # the local 0.5B model (or $VISTRACE_LLM)
>>> ans = agent.ask("photo.jpg", "How many cats are there?")
>>> ans.value, ans.program, ans.cited_steps        # the answer, its program, the steps it rests on
>>> ans.run.save("runs/cats")                      # trace.json, report.html, artifacts/

Images are a path, a PIL image or a :class:`vistrace.values.Image` (the input ``image``), a list
(``image``, ``image2``, ...) or a dict name -> image.  With ``session="NAME"`` (or a
:class:`~vistrace.agent.session.Session`) the turns and images persist in ``$VISTRACE_HOME``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

from vistrace.errors import InputError

from .events import Answered, Event, Failed
from .result import AgentAnswer, AgentFailed, Attempt


def image_names(count: int) -> list[str]:
    """Input names for ``count`` images: ``image``, ``image2``, ``image3``, ..."""
    return ["image" if k == 1 else f"image{k}" for k in range(1, count + 1)]


def normalize_images(images: Any) -> dict[str, Any]:
    """Input name -> image (path, PIL image or Image) from what a caller passes."""
    if images is None:
        return {}
    if isinstance(images, dict):
        bad = [n for n in images if not isinstance(n, str) or not n.isidentifier() or n.startswith("_")]
        if bad:
            raise InputError(f"image input name {bad[0]!r} is not a valid name", hint="use letters, digits and _")
        return dict(images)
    if isinstance(images, (list, tuple)):
        return dict(zip(image_names(len(images)), images))
    return {"image": images}


def to_image(value: Any):
    from vistrace.values import Image

    if isinstance(value, Image):
        return value
    if isinstance(value, (str, Path)):
        return Image.open(value)
    if type(value).__module__.startswith("PIL.") and hasattr(value, "convert"):
        return Image(value, source=getattr(value, "filename", "") or "PIL image")
    raise InputError(f"an image must be a path, a PIL image or a vistrace Image, got {type(value).__name__}")


class Agent:
    """Plans a program for a question, checks it, runs it, repairs it (up to ``max_repairs`` times)."""

    def __init__(self, llm: Any = None, registry: Any = None, *, max_repairs: int = 3, grammar: bool | str = True,
                 session: Any = None, max_tokens: int = 512, cache: Any = True, limits: Any = None,
                 max_reply_chars: int | None = None, isolate: Any = True):
        """``llm``: an LLM object, a spec string (``local``, ``local:qwen-1.5b``, ``openai:URL#MODEL``) or
        None (``$VISTRACE_LLM``, else ``local``); ``registry``: the tools (default: all installed);
        ``grammar``: constrain decoding when the model supports it — True/``auto`` picks the strongest
        (``typed``: one grammar per statement, typed by the variables so far; ``program``: one grammar for
        the whole program), False/``plain`` none; ``session``: a name or a Session;
        ``max_reply_chars``: the cap on one answer of the model (default
        :data:`~vistrace.agent.extract.MAX_REPLY_CHARS`): a longer one is refused unread, and a
        streamed one is no longer read past it; ``isolate``: run the model's programs in a worker
        process with OS limits (default True; an ``Isolation`` sets the limits; False runs them in this
        process — docs/isolation.md)."""
        from .extract import MAX_REPLY_CHARS

        if int(max_repairs) < 0:
            raise InputError(f"max_repairs must be 0 or more, got {max_repairs}")
        self.max_reply_chars = MAX_REPLY_CHARS if max_reply_chars is None else int(max_reply_chars)
        if self.max_reply_chars < 1:
            raise InputError(f"max_reply_chars must be 1 or more, got {max_reply_chars}")
        self._llm_spec = llm
        self._llm = None if llm is None or isinstance(llm, str) else llm
        self._registry = registry
        self.max_repairs = int(max_repairs)
        from .graph import DECODINGS

        if not isinstance(grammar, bool) and grammar not in DECODINGS:
            raise InputError(f"grammar must be True, False or one of {', '.join(DECODINGS)}, got {grammar!r}")
        self.grammar = grammar
        self.max_tokens = int(max_tokens)
        self.cache = cache
        self.limits = limits
        from vistrace.sandbox.isolate import Isolation

        self.isolate = Isolation.of(isolate)   # programs from an LLM run isolated unless told otherwise
        if isinstance(session, str):
            from .session import Session

            session = Session(session)
        self.session = session
        self._graph = None
        self.last: AgentAnswer | AgentFailed | None = None

    def __repr__(self) -> str:
        model = getattr(self._llm, "name", None) or self._llm_spec or "default"
        where = f", session={self.session.name!r}" if self.session is not None else ""
        return f"Agent(llm={model!r}, max_repairs={self.max_repairs}{where})"

    @property
    def llm(self):
        """The model (made from the spec on first use: a missing model file is an LLMUnavailable here)."""
        if self._llm is None:
            from .llm import make_llm

            self._llm = make_llm(self._llm_spec)
        return self._llm

    @property
    def registry(self):
        if self._registry is None:
            from vistrace.tools import default_registry

            self._registry = default_registry()
        return self._registry

    @property
    def graph(self):
        if self._graph is None:
            if self.session is not None:
                self._graph = self.session.graph
            else:
                from .graph import build_graph

                self._graph = build_graph()
        return self._graph

    # --- one turn ------------------------------------------------------------------------------
    def ask(self, images: Any = None, question: str | None = None) -> AgentAnswer:
        """Answer ``question`` about ``images``; raises :class:`AgentFailed` (with every attempt) when no
        attempt produced a program that checked and ran."""
        return self._outcome(self._events(images, question, tokens=False))

    async def aask(self, images: Any = None, question: str | None = None) -> AgentAnswer:
        """:meth:`ask` without blocking the event loop (the turn runs in a worker thread)."""
        return await asyncio.to_thread(self.ask, images, question)

    def stream(self, images: Any = None, question: str | None = None, *, tokens: bool = True) -> Iterator[Event]:
        """The turn as events (plan_started, llm_token, program, check_problems, step, runtime_error,
        repair) ending with ``answer`` or ``failed``; never raises for a failed turn."""
        return self._events(images, question, tokens=tokens)

    def resume(self, *, tokens: bool = False) -> AgentAnswer | None:
        """Finish the session's interrupted turn (None when there is none)."""
        if self.session is None or self.session.pending() is None:
            return None
        return self._outcome(self._events(None, None, tokens=tokens, resume=True))

    def stream_resume(self, *, tokens: bool = True) -> Iterator[Event]:
        if self.session is None or self.session.pending() is None:
            return iter(())
        return self._events(None, None, tokens=tokens, resume=True)

    def _outcome(self, events: Iterator[Event]) -> AgentAnswer:
        for ev in events:
            if isinstance(ev, Answered):
                return ev.answer
            if isinstance(ev, Failed):
                raise ev.error
        raise AgentFailed("the turn ended without an answer", [])  # pragma: no cover - the graph always ends

    def _inputs(self, images: Any) -> tuple[dict[str, Any], dict[str, str]]:
        """(input name -> Image value for the run, input name -> file or description for the state)."""
        given = normalize_images(images)
        if self.session is not None:
            stored = {name: self.session.store_image(img, name) for name, img in given.items()}
            paths = {**self.session.images(), **stored}
            return {n: to_image(p) for n, p in paths.items()}, stored
        values = {n: to_image(v) for n, v in given.items()}
        return values, {n: v.source or v.summary() for n, v in values.items()}

    def _events(self, images: Any, question: str | None, *, tokens: bool, resume: bool = False) -> Iterator[Event]:
        from .graph import AgentContext, turn_input

        if not resume and (not isinstance(question, str) or not question.strip()):
            raise InputError("the question is empty", hint="ask something about the images")
        llm = self.llm
        values, new_images = self._inputs(images)
        session = self.session
        ctx = AgentContext(llm=llm, registry=self.registry, values=values, grammar=self.grammar,
                           max_tokens=self.max_tokens, stream_tokens=tokens, cache=self.cache, limits=self.limits,
                           max_reply_chars=self.max_reply_chars, isolate=self.isolate,
                           save_dir=(lambda st: session.run_dir(int(st.get("turn") or 1))) if session else None)
        kwargs: dict[str, Any] = {"context": ctx, "stream_mode": ["custom", "values"]}
        if session is not None:
            kwargs.update(config=session.config, durability="sync")
        if resume:
            inp = None
        else:
            extra = []
            if session is not None:
                entry = session.interrupted_entry()
                extra = [entry] if entry else []
                turn = len(session.values().get("history") or []) + len(extra) + 1
            else:
                turn = 1
            inp = turn_input(question.strip(), turn, 1 + self.max_repairs, new_images, extra)
        final: dict[str, Any] = {}
        for mode, chunk in self.graph.stream(inp, **kwargs):
            if mode == "custom":
                yield chunk
            elif isinstance(chunk, dict):
                final = chunk
        ev = self._finish(final, ctx)
        self.last = ev.answer if isinstance(ev, Answered) else ev.error
        yield ev

    def _finish(self, final: dict[str, Any], ctx) -> Event:
        from .graph import failure_message

        attempts = [Attempt.from_state(a) for a in final.get("attempts") or []]
        outcome = final.get("outcome") or {}
        question = final.get("question", "")
        run_dir = Path(outcome["run_dir"]) if outcome.get("run_dir") else None
        if outcome.get("status") == "answered":
            n = int(outcome["attempt"])
            run = ctx.runs[n]
            ans = AgentAnswer(question=question, value=run.value, program=attempts[-1].program or "", run=run,
                              attempts=attempts, cited_steps=tuple(outcome.get("cited_steps") or ()), run_dir=run_dir)
            return Answered(n, answer=ans)
        last = attempts[-1] if attempts else None
        if last is not None and last.stage == "llm":
            hint = (last.error or {}).get("hint") or "check the --llm spec"
        else:
            hint = ("each attempt's program and problems are in .attempts; a larger model (--llm local:qwen-1.5b "
                    "or a server) or more repairs (--max-repairs) may do better")
        message = outcome.get("message") or failure_message([a.to_json() for a in attempts])
        err = AgentFailed(message, attempts, question=question, run=ctx.runs.get(last.number) if last else None,
                          run_dir=run_dir, hint=hint)
        return Failed(len(attempts), error=err)
