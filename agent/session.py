"""Chat sessions that persist: LangGraph's SQLite checkpointer in ``$VISTRACE_HOME/sessions.sqlite``.

A session is one checkpointer thread (``thread_id`` = the session name).  The agent graph's state is
saved after every node (``durability="sync"``), so a restart — or a ``kill -9`` in the middle of a
turn — loses nothing that was finished: the history of turns (question, answer, program, run folder)
and the session's images are read back from the database.  An interrupted turn is visible as
:meth:`Session.pending`; ``Agent.resume()`` finishes it, and anything else (a new question, a new
image) records it in the history as interrupted.

Images are copied into ``$VISTRACE_HOME/sessions/<name>/images/`` so the session does not depend on
the original files staying where they were; each turn's run folder goes to
``$VISTRACE_HOME/sessions/<name>/runs/turn-NNN/``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vistrace.errors import InputError

DB_NAME = "sessions.sqlite"
MAX_NAME = 100


@dataclass(frozen=True)
class Turn:
    """One finished turn of a session."""

    number: int
    question: str
    ok: bool
    answer: str | None
    program: str | None
    run_dir: str | None
    cited_steps: tuple[int, ...] = ()
    attempts: int = 0
    at: str = ""
    error: str | None = None

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "Turn":
        return cls(number=int(d.get("turn") or 0), question=d.get("question", ""), ok=bool(d.get("ok")),
                   answer=d.get("answer"), program=d.get("program"), run_dir=d.get("run_dir"),
                   cited_steps=tuple(d.get("cited_steps") or ()), attempts=int(d.get("attempts") or 0),
                   at=d.get("at", ""), error=d.get("error"))


@dataclass(frozen=True)
class SessionInfo:
    name: str
    turns: int
    last_question: str | None
    updated: str
    images: tuple[str, ...] = ()
    pending: str | None = None


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InputError("a session name must be a non-empty text", hint="e.g. --session kitchen")
    name = name.strip()
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise InputError(f"session name {name[:40]!r} is too long or holds control characters",
                         hint=f"use at most {MAX_NAME} printable characters")
    return name


def _folder_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "session"
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return safe


def db_path(home: str | Path | None = None) -> Path:
    from vistrace.config import home as vistrace_home

    return Path(home) if home is not None else vistrace_home()


class Session:
    """A named chat session.  Opening one creates nothing; the database is created on first write."""

    def __init__(self, name: str = "default", home: str | Path | None = None):
        self.name = check_name(name)
        self.home = db_path(home)
        self.db = self.home / DB_NAME
        self.folder = self.home / "sessions" / _folder_name(self.name)
        self._conn: sqlite3.Connection | None = None
        self._saver = None
        self._graph = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Session({self.name!r}, {self.db})"

    # --- storage -------------------------------------------------------------------------------
    @property
    def saver(self):
        """The LangGraph SqliteSaver (opens, and creates, the database on first use)."""
        with self._lock:
            if self._saver is None:
                from langgraph.checkpoint.sqlite import SqliteSaver

                self.home.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(str(self.db), check_same_thread=False, timeout=30)
                saver = SqliteSaver(self._conn)
                saver.setup()
                self._saver = saver
            return self._saver

    @property
    def config(self) -> dict[str, Any]:
        return {"configurable": {"thread_id": self.name}}

    @property
    def graph(self):
        if self._graph is None:
            from .graph import build_graph

            self._graph = build_graph(self.saver)
        return self._graph

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = self._saver = self._graph = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def exists(self) -> bool:
        return self.db.is_file() and self.graph.get_state(self.config).created_at is not None

    # --- reading -------------------------------------------------------------------------------
    def snapshot(self):
        return self.graph.get_state(self.config)

    def values(self) -> dict[str, Any]:
        if not self.db.is_file():
            return {}
        return dict(self.snapshot().values or {})

    def history(self) -> list[Turn]:
        return [Turn.from_state(t) for t in self.values().get("history") or []]

    def images(self) -> dict[str, str]:
        """Input name -> image file of the session."""
        return dict(self.values().get("images") or {})

    def pending(self) -> str | None:
        """The question of a turn that was interrupted (the process stopped mid-turn), else None."""
        if not self.db.is_file():
            return None
        snap = self.snapshot()
        if snap.next and (snap.values or {}).get("question"):
            return snap.values["question"]
        return None

    def info(self) -> SessionInfo:
        snap = self.snapshot() if self.db.is_file() else None
        values = dict(snap.values or {}) if snap else {}
        history = values.get("history") or []
        return SessionInfo(self.name, len(history), history[-1]["question"] if history else values.get("question"),
                           (snap.created_at or "") if snap else "", tuple(values.get("images") or ()),
                           values.get("question") if snap and snap.next else None)

    # --- writing -------------------------------------------------------------------------------
    def interrupted_entry(self) -> dict | None:
        """The history entry that records an interrupted turn (None when no turn is pending)."""
        question = self.pending()
        if question is None:
            return None
        values = self.values()
        attempts = values.get("attempts") or []
        return {"turn": int(values.get("turn") or len(values.get("history") or []) + 1), "question": question,
                "ok": False, "answer": None, "error": "interrupted: the process stopped during this turn",
                "program": next((a.get("program") for a in reversed(attempts) if a.get("program")), None),
                "run_dir": None, "cited_steps": [], "attempts": len(attempts),
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def next_image_name(self) -> str:
        names = self.images()
        if "image" not in names:
            return "image"
        k = 2
        while f"image{k}" in names:
            k += 1
        return f"image{k}"

    def store_image(self, image: Any, name: str) -> str:
        """Copy an image file (or save an in-memory image as PNG) into the session folder; its path."""
        from vistrace.values import Image

        folder = self.folder / "images"
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(image, (str, Path)):
            src = Path(image).expanduser()
            Image.open(src)  # a clear InputError for a missing or unreadable file
            digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", src.stem)[:60] or name
            dest = folder / f"{stem}-{digest}{src.suffix.lower() or '.png'}"
            if not dest.exists():
                shutil.copyfile(src, dest)
            return str(dest)
        value = image if isinstance(image, Image) else Image(image, source="PIL image")
        dest = folder / f"{name}-{value.sha256[:12]}.png"
        if not dest.exists():
            value.pil.save(dest)
        return str(dest)

    def add_image(self, image: Any, name: str | None = None) -> str:
        """Add (or replace) an image input of the session; returns its input name."""
        name = name or self.next_image_name()
        if not name.isidentifier() or name.startswith("_"):
            raise InputError(f"image name {name!r} is not a valid input name", hint="use letters, digits and _")
        stored = self.store_image(image, name)
        update: dict[str, Any] = {"images": {name: stored}}
        entry = self.interrupted_entry()
        if entry is not None:
            update["history"] = [entry]
        # written as the terminal node "fail" would: the thread has no pending work afterwards
        self.graph.update_state(self.config, update, as_node="fail")
        return name

    def run_dir(self, turn: int) -> Path:
        return self.folder / "runs" / f"turn-{turn:03d}"

    def delete(self) -> None:
        if self.db.is_file():
            self.saver.delete_thread(self.name)
        shutil.rmtree(self.folder, ignore_errors=True)


def list_sessions(home: str | Path | None = None) -> list[SessionInfo]:
    """Every session in ``$VISTRACE_HOME/sessions.sqlite``, most recently updated first."""
    root = db_path(home)
    db = root / DB_NAME
    if not db.is_file():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        names = [r[0] for r in conn.execute("SELECT DISTINCT thread_id FROM checkpoints WHERE checkpoint_ns = ''")]
    except sqlite3.OperationalError:
        names = []
    finally:
        conn.close()
    infos = []
    for name in names:
        s = Session(name, root)
        try:
            infos.append(s.info())
        finally:
            s.close()
    return sorted(infos, key=lambda i: i.updated, reverse=True)
