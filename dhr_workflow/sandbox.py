"""The template sandbox: Jinja2's, with limits on the work and memory one message may take.

A deployment may write its own templates. Jinja2's SandboxedEnvironment keeps them away from
Python's internals but not from the machine's memory or time: nested ``range(100000)`` loops,
``"x" * 500000000`` or a string doubled in a loop pass it and take gigabytes. Here, while one
message renders (:func:`budget`):

- loop iterations, calls (macros, methods) and filters: at most STEPS in all;
- the render: at most SECONDS, checked at each of those steps;
- ``range()``: at most RANGE numbers;
- a string, list or number made by ``*``, ``+``, ``**``, ``%``, ``~``, a string method or a
  filter: at most SIZE characters or items (INT_BITS bits), checked *before* the operations
  that multiply (``"x" * n``, ``center``, ``indent``, ``replace``, ``join``, ``format``, ...);
- a value written out or turned into text: at most SIZE characters, counting what its items
  would print (:func:`weight`), so a list of references to one long string cannot multiply it;
- what a template writes: at most SIZE characters (:func:`collect`);
- lists, dicts and sets cannot be changed in place (Jinja2's immutable sandbox).

Each limit raises :class:`TooBig`, a Jinja2 ``SecurityError``, whose message names the limit.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

# The shipped templates' largest message (a partnership report) takes a few hundred steps and
# writes a few kilobytes: these leave two orders of magnitude of room.
STEPS = 200_000
SECONDS = 3.0
RANGE = 10_000
SIZE = 2_000_000
INT_BITS = 100_000


class TooBig(SecurityError):
    """A template went past one of the limits."""


@dataclass
class _Budget:
    steps: int
    deadline: float


_BUDGET: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


@contextmanager
def budget() -> Iterator[None]:
    """The limits of one message's render (all its parts)."""
    token = _BUDGET.set(_Budget(STEPS, time.monotonic() + SECONDS))
    try:
        yield
    finally:
        _BUDGET.reset(token)


# The clock is read every CLOCK_EVERY steps, not at each: a step is a loop item, a call or a
# filter, each bounded in size, so a few dozen take microseconds (and the clock is half the
# cost of a step).
CLOCK_EVERY = 32


def step() -> None:
    budget_ = _BUDGET.get()
    if budget_ is None:  # compiling: Jinja2 folds constant expressions
        return
    budget_.steps -= 1
    if budget_.steps < 0:
        raise TooBig(f"it loops or calls more than {STEPS} times (the limit for one message)")
    if budget_.steps % CLOCK_EVERY == 0 and time.monotonic() > budget_.deadline:
        raise TooBig(f"it takes more than {SECONDS:g} s to render (the limit for one message)")


def weight(value: Any, limit: int = SIZE) -> int:
    """About how many characters ``value`` prints as, each item at least one: a container
    counts its items', each time they appear. Counting stops once past ``limit``."""
    if isinstance(value, str):  # nearly always, when printing
        return max(1, len(value))
    total, todo = 0, [value]
    while todo and total + len(todo) <= limit:  # what is left weighs at least len(todo)
        item = todo.pop()
        if isinstance(item, bool) or item is None:
            total += 1
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, str | bytes):
            total += max(1, len(item))
        elif isinstance(item, list | tuple | set | frozenset | range):
            total += 1
            todo.extend(item)
        elif isinstance(item, Mapping):
            total += 1 + len(item)
            todo.extend(item.values())
        elif isinstance(item, Namespace):
            total += 1
            todo.append(item._Namespace__attrs)  # what it prints
        else:
            total += 1
    return total + len(todo)


def _refuse_size(size: int, what: str = "a text or list") -> None:
    if size > SIZE:
        raise TooBig(f"it makes {what} of more than {SIZE} characters or items (the limit)")


def _sized(value: Any) -> Any:
    """A result, checked; an iterator is weighed as it is consumed."""
    if isinstance(value, str):  # nearly always
        _refuse_size(len(value))
        return value
    if isinstance(value, bool | Undefined):
        return value
    if isinstance(value, int):
        if value.bit_length() > INT_BITS:
            raise TooBig(f"it makes a number of more than {INT_BITS} bits (the limit)")
    elif isinstance(value, Sized) and not isinstance(value, range):
        _refuse_size(len(value))
    elif isinstance(value, Iterator):
        return _weighed(value)
    return value


def _weighed(items: Iterable[Any], extra: int = 0) -> Iterator[Any]:
    """``items``, refused once what they would print (plus ``extra`` each) passes SIZE."""
    total = 0
    for item in items:
        total += weight(item) + extra
        _refuse_size(total)
        yield item


def bounded(items: Iterable[Any]) -> Iterator[Any]:
    """What a ``for`` loop iterates: each item is a step."""
    for item in items:
        step()
        yield item


def bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > RANGE:
        raise TooBig(f"range() of more than {RANGE} numbers (the limit)")
    return numbers


def collect(chunks: Iterable[str]) -> str:
    """A template's output, refused once it passes SIZE characters (not after)."""
    parts: list[str] = []
    keep, size = parts.append, 0  # a message is thousands of chunks: the loop is kept bare
    for chunk in chunks:
        size += len(chunk)
        if size > SIZE:
            raise TooBig(f"it writes more than {SIZE} characters (the limit)")
        keep(chunk)
    return "".join(parts)


# --- estimates made before an operation that multiplies ---------------------------------------

_PRINTF = re.compile(r"%[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?")


def _widths(fmt: str, given: list[Any]) -> int:
    """The widths and precisions a %-format or str.format string asks for, in all; those taken
    from the values (``%*s``, ``{:{w}}``) count as the values' integers."""
    asked, from_values = 0, False
    for width, precision in _PRINTF.findall(fmt):
        for n in (width, precision):
            from_values |= n == "*"
            asked += int(n) if n.isdigit() else 0
    try:
        specs = [spec or "" for _, _, spec, _ in string.Formatter().parse(fmt)]
    except ValueError:  # not a str.format string; formatting it fails on its own
        specs = []
    for spec in specs:
        from_values |= "{" in spec
        asked += sum(int(n) for n in re.findall(r"\d+", spec))
    if from_values:
        asked += sum(abs(v) for v in given if isinstance(v, int))
    return asked


def _format_size(fmt: Any, args: Any = (), kwargs: Mapping[str, Any] | None = None) -> int:
    """``fmt % args`` or ``fmt.format(*args, **kwargs)``: its text, the widths it asks for and
    what the values print as."""
    if isinstance(args, Mapping):
        args, kwargs = (), args
    elif not isinstance(args, tuple | list):
        args = (args,)
    given = [*args, *(kwargs or {}).values()]
    return len(str(fmt)) + _widths(str(fmt), given) + weight(given)


def _replace_size(text: str, old: Any, new: Any, count: Any = None) -> int:
    found = text.count(str(old)) if str(old) else len(text) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * len(str(new))


def _lines(text: Any) -> int:
    return str(text).count("\n") + 1


def _width(value: Any) -> int:
    return value if isinstance(value, int) else len(str(value))


_METHODS: dict[str, Callable[..., int]] = {
    "center": lambda s, width, *_: max(len(s), _width(width)),
    "ljust": lambda s, width, *_: max(len(s), _width(width)),
    "rjust": lambda s, width, *_: max(len(s), _width(width)),
    "zfill": lambda s, width: max(len(s), _width(width)),
    "expandtabs": lambda s, tabsize=8: len(s) + s.count("\t") * _width(tabsize),
    "replace": _replace_size,
}

# Filters by the names of their parameters (Jinja2's own, via inspect.signature).
_FILTERS: dict[str, Callable[[dict[str, Any]], int]] = {
    "center": lambda a: max(weight(a["value"]), _width(a.get("width", 80))),
    "indent": lambda a: weight(a["s"]) + _lines(a["s"]) * _width(a.get("width", 4)),
    "wordwrap": lambda a: (
        weight(a["s"])
        * (1 + len(a.get("wrapstring") or "\n") // max(1, _width(a.get("width", 79))))
    ),
    "replace": lambda a: _replace_size(str(a["s"]), a["old"], a["new"], a.get("count")),
    "format": lambda a: _format_size(a["value"], a.get("args", ()), a.get("kwargs")),
    "batch": lambda a: (
        weight(a["value"])
        + (_width(a.get("linecount", 0)) if a.get("fill_with") is not None else 0)
    ),
    "slice": lambda a: weight(a["value"]) + _width(a.get("slices", 0)),
    "tojson": lambda a: weight(a["value"]) * (1 + _width(a.get("indent") or 0)),
}
# Filters that turn their whole value into text: the value's weight is the size.
_TEXT_FILTERS = frozenset({
    "string", "e", "escape", "forceescape", "safe", "urlencode", "urlize", "title", "upper",
    "lower", "capitalize", "trim", "striptags", "truncate", "wordcount", "xmlattr", "pprint",
    "sum",
})  # fmt: skip


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` as a step, its result size-checked, and checked before it runs where its
    arguments tell how large the result will be. The wrapper is chosen once per filter: a
    message calls filters thousands of times."""
    signature = inspect.signature(func)
    first = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0  # after the context
    estimate = _FILTERS.get(name)

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        bound = signature.bind(*args, **kwargs)
        given = {k: v for k, v in bound.arguments.items() if k not in ("eval_ctx", "environment")}
        return bound, given

    def plain(*args: Any, **kwargs: Any) -> Any:
        step()
        return _sized(func(*args, **kwargs))

    def text(*args: Any, **kwargs: Any) -> Any:
        step()
        if len(args) > first:
            _refuse_size(weight(args[first]))
        return _sized(func(*args, **kwargs))

    def estimated(*args: Any, **kwargs: Any) -> Any:
        step()
        bound, given = bind(args, kwargs)
        _refuse_size(estimate(given))  # type: ignore[misc]
        return _sized(func(*bound.args, **bound.kwargs))

    def join(*args: Any, **kwargs: Any) -> Any:
        # the items weighed as they are joined, separators included
        step()
        if len(args) > first:  # the value, as a filter always passes it
            sep = args[first + 1] if len(args) > first + 1 else kwargs.get("d", "")
            args = (*args[:first], _weighed(args[first], len(str(sep))), *args[first + 1 :])
        else:
            bound, given = bind(args, kwargs)
            bound.arguments["value"] = _weighed(given["value"], len(str(given.get("d", ""))))
            args, kwargs = bound.args, bound.kwargs
        return _sized(func(*args, **kwargs))

    if name == "join":
        guarded = join
    elif estimate is not None:
        guarded = estimated
    elif name in _TEXT_FILTERS:
        guarded = text
    else:
        guarded = plain
    return functools.wraps(func)(guarded)  # keeps Jinja2's pass_context/pass_eval_ctx marks


def _guard_method(method: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Checks a string method's call before it is made; ``join`` weighs its items."""
    text = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if not isinstance(text, str):
        return args
    if name == "join" and args:
        return (_weighed(args[0], len(text)), *args[1:])
    if name in _METHODS and args:
        with contextlib.suppress(TypeError):  # wrong arguments: the call itself says so
            _refuse_size(_METHODS[name](text, *args))
    return args


# --- the environment ----------------------------------------------------------------------------


LOOP_FILTER = "_loop_items"  # what each ``for`` loop iterates goes through it: a step an item


class _CodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, LOOP_FILTER, [], [], None, None, lineno=loop.iter.lineno
            )
        super().visit_Template(node, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # Jinja2's own, with the parts weighed before they are joined (``a ~ b``)
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.text_parts((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write(")))")


def _printable(value: Any) -> Any:
    if type(value) is str:  # nearly always: the check weight() would make, without the call
        if len(value) > SIZE:
            _refuse_size(len(value), "a value to write out")
        return value
    _refuse_size(weight(value), "a value to write out")
    return value


_DICT_ATTRIBUTES = frozenset(dir(dict))


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """A sandboxed environment that keeps to the limits above."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self, filters: Mapping[str, Callable[..., Any]], **options: Any) -> None:
        super().__init__(finalize=_printable, **options)
        self.globals["range"] = bounded_range
        self.globals.pop("lipsum", None)  # lipsum(n=10**9) writes a billion paragraphs
        # every filter, Jinja2's and ours, is a step and is size-checked
        self.filters = {
            name: _guard_filter(name, f) for name, f in {**self.filters, **filters}.items()
        }
        self.filters[LOOP_FILTER] = bounded

    def getattr(self, obj: Any, attribute: str) -> Any:
        # ``action.text`` on the plain dicts every message is rendered from: Jinja2 tries the
        # attribute first and reaches the item through an AttributeError, a third of a
        # render's time. The item is what it would return (dict's own attributes excepted).
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    @staticmethod
    def text_parts(parts: tuple[Any, ...]) -> tuple[Any, ...]:
        _refuse_size(sum(weight(p) for p in parts))
        return parts

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        step()
        _check_binop(operator_, left, right)
        return _sized(super().call_binop(context, operator_, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        formatter = super().wrap_str_format(value)
        if formatter is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            if value.__name__ == "format_map" and args:
                _refuse_size(_format_size(fmt, (), args[0]))
            else:
                _refuse_size(_format_size(fmt, args, kwargs))
            return formatter(*args, **kwargs)

        return checked

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        step()
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (bounded(args[0]), *args[1:])
        args = _guard_method(__obj, args)
        return _sized(super().call(__context, __obj, *args, **kwargs))


def _check_binop(op: str, left: Any, right: Any) -> None:
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int):
                _refuse_size(len(seq) * n)
        if isinstance(left, int) and isinstance(right, int):
            _refuse_bits(left.bit_length() + right.bit_length())
    elif op == "+" and isinstance(left, str | list | tuple) and isinstance(right, Sized):
        _refuse_size(len(left) + len(right))
    elif op == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
        _refuse_bits(left.bit_length() * max(0, right))
    elif op == "%" and isinstance(left, str):
        _refuse_size(_format_size(left, right))


def _refuse_bits(bits: int) -> None:
    if bits > INT_BITS:
        raise TooBig(f"it makes a number of more than {INT_BITS} bits (the limit)")
