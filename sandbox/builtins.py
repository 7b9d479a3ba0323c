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
    budget = interp.budget
    if name == "print":
        _no_kwargs(name, kwargs, ("sep",))
        sep = kwargs.get("sep", " ")
        size = sum(budget.measure(a, text=True) for a in args) + budget.measure(sep, text=True) * (len(args) - 1)
        if size > interp.limits.max_string:
            raise LimitExceeded("max_string", interp.limits.max_string,
                                f"print() of about {size} characters exceeds the limit max_string")
        text = str(sep).join(str(a) for a in args)
        budget.made(text)  # what was printed is kept for the trace: it counts towards max_memory
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
        if name in ("sorted", "set"):
            budget.measure(src)  # every element is compared or hashed
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
        if args:
            budget.measure(_sized(interp, args[0], "dict"))
        base = dict(args[0]) if args else {}
        base.update(kwargs)
        return base
    if name in ("min", "max"):
        _no_kwargs(name, kwargs, ("default",))
        fn = min if name == "min" else max
        src = _sized(interp, args[0], name) if len(args) == 1 else args
        budget.measure(src)  # every element is compared
        if len(args) == 1:
            return fn(src, **kwargs)
        return fn(*args, **kwargs)
    if name == "sum":
        _no_kwargs(name, kwargs, ("start",))
        start = kwargs.get("start", 0)
        if type(start) not in (int, float, bool):
            # sum(lists, start=[]) copies the growing list once per item: quadratic time and memory
            raise RuntimeProgramError(f"sum() adds numbers; start must be a number, got {type(start).__name__}",
                                      hint="join lists with a comprehension: [x for part in parts for x in part]")
        return sum(_sized(interp, args[0], name), start)
    if name in ("any", "all"):
        _no_kwargs(name, kwargs)
        return (any if name == "any" else all)(_sized(interp, args[0], name) if len(args) == 1 else args)
    if name in ("len", "abs", "bool"):
        _no_kwargs(name, kwargs)
        return {"len": len, "abs": abs, "bool": bool}[name](*args)
    if name == "round":
        _no_kwargs(name, kwargs)
        if len(args) == 2 and type(args[0]) is int and type(args[1]) is int \
                and -args[1] > interp.limits.max_int_bits:
            # round(5, -10**8) computes 10**(10**8) first: refuse it like any other integer that large
            raise LimitExceeded("max_int_bits", interp.limits.max_int_bits,
                                f"round() to {args[1]} digits exceeds the limit max_int_bits")
        return round(*args)
    if name in ("int", "float"):
        _no_kwargs(name, kwargs)
        if args and isinstance(args[0], str) and len(args[0]) > 1000:
            raise RuntimeProgramError(f"{name}() of a {len(args[0])}-character string is not allowed")
        return (int if name == "int" else float)(*args)
    if name == "str":
        _no_kwargs(name, kwargs)
        if args:
            budget.measure(args[0], text=True)
        return str(*args)
    raise RuntimeProgramError(f"builtin '{name}' is not available")
