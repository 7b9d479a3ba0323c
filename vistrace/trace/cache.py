"""An on-disk, content-addressed cache of tool results, so a replayed program is exact and fast.

A key is a sha256 over the tool name, the backend, the model version and the canonical arguments,
where every argument value is reduced to its content fingerprint (images by pixel hash and
provenance).  Entries are stored with the exact value codec (a small zip of JSON + PNG/NPY blobs),
never pickle, so reading a cache entry can only ever produce values.

Layout: ``root/ab/abcdef…`` (sharded by the key's first two hex digits).  Writes go to a uniquely
named temporary file in the same folder and are moved into place with ``os.replace``, so readers
never see half an entry and concurrent writers of one key cannot corrupt it.  A corrupt entry is a
miss (and is removed); a value the codec cannot encode is simply not cached; a disk that refuses the
write costs the cache, never the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Bump when the key recipe or the stored format changes: old entries then simply stop matching.
CACHE_FORMAT = "vistrace-result-cache/1"

_KEY_RE = re.compile(r"^[0-9a-f]{64}$")


class ResultCache:
    """Tool results on disk, by content key.

    ``ResultCache()`` uses :func:`vistrace.config.cache_dir` (read when the cache is made); the
    folder is created on the first ``put``.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        if root is None:
            from ..config import cache_dir

            root = cache_dir()
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ResultCache({str(self.root)!r})"

    # keys -----------------------------------------------------------------
    @staticmethod
    def key(tool: str, backend: str, version: str, args: dict[str, Any]) -> str:
        """The content key of one tool call: sha256 hex over tool, backend, model version and args.

        Argument order does not matter; each value goes through :func:`vistrace.values.fingerprint`.
        """
        from ..values import fingerprint

        canon = {
            "format": CACHE_FORMAT,
            "tool": str(tool),
            "backend": "" if backend is None else str(backend),
            "version": "" if version is None else str(version),
            "args": {str(k): fingerprint(v) for k, v in args.items()},
        }
        return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        """Where the entry for ``key`` lives (``root/key[:2]/key``)."""
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValueError(f"not a result-cache key (64 lower-case hex digits): {key!r}")
        return self.root / key[:2] / key

    # entries --------------------------------------------------------------
    def get(self, key: str) -> tuple[bool, Any]:
        """``(True, value)`` on a hit, ``(False, None)`` on a miss; a corrupt entry is removed and misses."""
        from ..values.codec import loads

        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False, None
        except OSError as exc:
            log.warning("result cache: cannot read %s: %s", path, exc)
            return False, None
        try:
            return True, loads(data)
        except Exception as exc:  # any decoding failure means the entry is unusable
            log.warning("result cache: removing corrupt entry %s (%s: %s)", path, type(exc).__name__, exc)
            try:
                path.unlink()
            except OSError:
                pass
            return False, None

    def put(self, key: str, value: Any) -> bool:
        """Store ``value`` under ``key``; returns False (and stores nothing) when it cannot be encoded or written."""
        from ..values.codec import dumps

        path = self.path(key)
        try:
            data = dumps(value)
        except Exception as exc:  # a value the codec does not know is simply not cached
            log.debug("result cache: not caching %s: %s", type(value).__name__, exc)
            return False
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # mkstemp picks a fresh name (O_EXCL), so concurrent writers never share a temporary file
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            tmp = None
            return True
        except OSError as exc:
            log.warning("result cache: cannot write %s: %s", path, exc)
            return False
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def entries(self) -> list[Path]:
        """Every stored entry (temporary files excluded)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("??/*") if p.is_file() and _KEY_RE.match(p.name))

    def size_bytes(self) -> int:
        total = 0
        for p in self.entries():
            try:
                total += p.stat().st_size
            except OSError:
                pass
        return total

    def clear(self) -> int:
        """Remove every entry (and stray temporary files); returns how many entries were removed."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for shard in self.root.iterdir():
            if not (shard.is_dir() and len(shard.name) == 2):
                continue
            for p in shard.iterdir():
                if p.is_file() and (_KEY_RE.match(p.name) or p.name.endswith(".tmp")):
                    try:
                        p.unlink()
                        removed += bool(_KEY_RE.match(p.name))
                    except OSError:
                        pass
            try:
                shard.rmdir()
            except OSError:
                pass
        return removed
