"""The builtins a program may call, in bounded versions (no iterators escape, sizes are checked)."""

from __future__ import annotations

from typing import Any

from vistrace.errors import LimitExceeded, RuntimeProgramError


def _sized(interp, value, what: str):
    """Refuse to materialise an iterable longer than max_collection."""
    n = len(value) if hasattr(value, "__len__") else None
    if n is not None and n > interp.limits.max_collection:
        raise LimitExceeded("max_collection", interp.limits.max_collection,
                            f"{what} of {n} elements exceeds the limit max_collection={interp.limits.max_collection}")
    return value


def _no_kwargs(name: str, kwargs: dict, allowed: tuple[str, ...] = ()) -> None:
    extra = [k for k in kwargs if k not in allowed]
    if extra:
        raise RuntimeProgramError(f"{name}() does not take the argument '{extra[0]}'"
                                  + (f" (allowed: {', '.join(allowed)})" if allowed else ""))


def call_builtin(interp, name: str, args: list, kwargs: dict[str, Any]) -> Any:  # noqa: C901
    args = [interp.resolve(a) for a in args]
    if name == "print":
        _no_kwargs(name, kwargs, ("sep",))
        text = str(kwargs.get("sep", " ")).join(str(a) for a in args)
        interp.budget.check_size(text)
        interp.printed.append(text)
        return None
    if name == "range":
        _no_kwargs(name, kwargs)
        return range(*args)
    if name in ("list", "tuple", "set", "sorted", "reversed"):
        allowed = ("reverse",) if name == "sorted" else ()
        _no_kwargs(name, kwargs, allowed)
        if not args:
            return {"list": list, "tuple": tuple, "set": set}.get(name, list)()
        src = _sized(interp, args[0], name)
        if name == "sorted":
            return sorted(src, reverse=bool(kwargs.get("reverse", False)))
        if name == "reversed":
            return list(reversed(list(src)))
        return {"list": list, "tuple": tuple, "set": set}[name](src)
    if name in ("enumerate", "zip"):
        _no_kwargs(name, kwargs, ("start",) if name == "enumerate" else ())
        for a in args:
            _sized(interp, a, name)
        return list(enumerate(args[0], int(kwargs.get("start", 0)))) if name == "enumerate" else list(zip(*args))
    if name == "dict":
        base = dict(_sized(interp, args[0], "dict")) if args else {}
        base.update(kwargs)
        return base
    if name in ("min", "max"):
        _no_kwargs(name, kwargs, ("default",))
        fn = min if name == "min" else max
        if len(args) == 1:
            return fn(_sized(interp, args[0], name), **kwargs)
        return fn(*args, **kwargs)
    if name == "sum":
        _no_kwargs(name, kwargs, ("start",))
        return sum(_sized(interp, args[0], name), kwargs.get("start", 0))
    if name in ("any", "all", "len", "abs", "bool"):
        _no_kwargs(name, kwargs)
        return {"any": any, "all": all, "len": len, "abs": abs, "bool": bool}[name](*args)
    if name == "round":
        _no_kwargs(name, kwargs)
        return round(*args)
    if name in ("int", "float"):
        _no_kwargs(name, kwargs)
        if args and isinstance(args[0], str) and len(args[0]) > 1000:
            raise RuntimeProgramError(f"{name}() of a {len(args[0])}-character string is not allowed")
        return (int if name == "int" else float)(*args)
    if name == "str":
        _no_kwargs(name, kwargs)
        return str(*args)
    raise RuntimeProgramError(f"builtin '{name}' is not available")
