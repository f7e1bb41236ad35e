"""Personalisation: Jinja2's immutable sandbox, given plain data only, bounded in size and time.

What a template may do: read the plain data it is given (dicts, lists, strings, numbers), use
Jinja's filters and tests, branch and loop. What it cannot do:

- reach Python objects: the sandbox refuses underscore attributes and unsafe callables, the
  immutable sandbox refuses methods that change a dict or list, and the context holds plain
  data only (the sandbox would call methods of objects passed in);
- build huge values: `*`, `**` and `%` are checked, size-taking filters are bounded, `range`
  draws from a budget per render, `str.format` is refused (its widths can come from
  arguments) and the output is capped;
- run long: a watchdog thread raises RenderTimeout in a render that passes its deadline.

A missing variable renders empty (ChainableUndefined: `contact.data.plan.name` too) or its
`default`, and never fails a send.
"""

from __future__ import annotations

import ctypes
import html
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError, meta, pass_context
from jinja2.filters import do_center, do_indent, do_replace, do_truncate, do_wordwrap
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from markupsafe import Markup

from postroom.tracking.links import links_for

# The most characters one value or one render may grow to.
MAX_VALUE = 100_000
MAX_OUTPUT = 2_000_000
# Items all range() calls of one render may produce together.
RANGE_BUDGET = 10_000
# A render that takes longer than this fails (the message fails with the reason).
RENDER_SECONDS = 1.0

# printf-style widths or precisions of four digits or more, or taken from the arguments.
WIDE_PRINTF = re.compile(r"%[#0\- +]*(?:\*|\d{4,})|%[#0\- +]*\d*\.(?:\*|\d{4,})")


class TemplateProblem(ValueError):
    """A template that cannot be used, and where: the part ("Body", "Subject"…), the line
    and the column (1-based) when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.message, self.line, self.column = message, line, column
        self.part = ""
        super().__init__(message)

    def within(self, part: str) -> TemplateProblem:
        self.part = part
        return self

    def __str__(self) -> str:
        where = [self.part] if self.part else []
        if self.line:
            where.append(f"line {self.line}")
        if self.line and self.column:
            where.append(f"column {self.column}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class RenderTimeout(Exception):
    pass


# What a render can raise for one recipient's data: the message fails with it, alone.
RENDER_ERRORS = (
    TemplateError,
    RenderTimeout,
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
    RecursionError,
)


def too_big(what: str) -> SecurityError:
    return SecurityError(f"{what} would be larger than {MAX_VALUE:,} characters")


def check_printf(fmt: Any) -> None:
    if isinstance(fmt, str) and WIDE_PRINTF.search(fmt):
        raise SecurityError("format widths above 999 are not allowed")


def sized(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def bounded(filter_func: Callable, width_arg: int = 1) -> Callable:
    """A size-taking filter whose width argument is at most MAX_VALUE."""

    def wrapper(*args, **kwargs):
        widths = [a for a in args[width_arg : width_arg + 1] if isinstance(a, int)]
        widths += [v for k, v in kwargs.items() if k in ("width", "length") and isinstance(v, int)]
        if any(w > MAX_VALUE for w in widths):
            raise too_big("the result")
        return filter_func(*args, **kwargs)

    return wrapper


def safe_replace(eval_ctx, s, old, new, count=None):
    s, old, new = str(s), str(old), str(new)
    grows = max(0, len(new) - len(old)) * (s.count(old) if old else len(s) + 1)
    if len(s) + grows > MAX_VALUE:
        raise too_big("the replaced text")
    return do_replace(eval_ctx, s, old, new, count)


safe_replace.jinja_pass_arg = do_replace.jinja_pass_arg  # type: ignore[attr-defined]


def safe_format(value, *args, **kwargs):
    check_printf(value)
    if args and kwargs:
        raise SecurityError("format takes positional or keyword arguments, not both")
    result = str(value) % (kwargs or args)
    if len(result) > MAX_VALUE:
        raise too_big("the formatted text")
    return result


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, autoescape: bool):
        super().__init__(
            autoescape=autoescape, undefined=ChainableUndefined, keep_trailing_newline=True
        )
        for name in ("lipsum", "range"):
            self.globals.pop(name, None)
        self.filters.update(
            center=bounded(do_center),
            indent=bounded(do_indent),
            wordwrap=bounded(do_wordwrap, width_arg=2),
            truncate=bounded(do_truncate, width_arg=2),
            replace=safe_replace,
            format=safe_format,
        )

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if sized(seq) and isinstance(n, int) and sized(seq) * n > MAX_VALUE:
                    raise too_big("the repeated value")
        elif operator == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise SecurityError("exponents above 100 are not allowed")
        elif operator == "%" and isinstance(left, str):
            check_printf(left)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # data.items is the "items" the sender passed, not dict.items: keys come first.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if super().wrap_str_format(value) is not None:
            # Its widths may come from its arguments ("{:{}}".format(x, 10**9)).
            raise SecurityError("str.format is not available: use the format filter")
        return None


@pass_context
def tracked(context, url: Any) -> str:
    """A link through the click redirect of the message being rendered (its code is in the
    context as `_message`); as it is in a preview, or when it is not http(s)."""
    text = html.unescape(str(url)) if isinstance(url, Markup) else str(url)
    code = context.get("_message")
    if not code or not TRACKABLE.match(text):
        return text
    return links_for(code).click(text.strip())


@pass_context
def open_pixel(context) -> Markup:
    code = context.get("_message")
    if not code:
        return Markup("")
    return PIXEL.format(src=links_for(code).open(), style=PIXEL_STYLE)


PIXEL = Markup('<img src="{src}" width="1" height="1" alt="" style="{style}">')
PIXEL_STYLE = "display:block;width:1px;height:1px;border:0;margin:0;padding:0"
TRACKABLE = re.compile(r"\s*https?://", re.IGNORECASE)

SANDBOXES = {True: Sandbox(autoescape=True), False: Sandbox(autoescape=False)}
for sandbox in SANDBOXES.values():
    sandbox.globals.update(tracked=tracked, open_pixel=open_pixel)
    sandbox.filters["tracked"] = tracked


def compile_template(source: str, html: bool):
    """A compiled template, or TemplateProblem naming the line (and column, when found)."""
    try:
        return SANDBOXES[html].from_string(source)
    except TemplateSyntaxError as e:
        column = guess_column(source, e)
        raise TemplateProblem(e.message or "syntax error", e.lineno, column) from None
    except RecursionError:
        raise TemplateProblem("the template nests too deeply") from None


def guess_column(source: str, e: TemplateSyntaxError) -> int | None:
    """Jinja reports the line only: point at the last tag opened on that line before the
    error, which is where a person should look."""
    lines = source.splitlines()
    if not e.lineno or e.lineno > len(lines):
        return None
    line = lines[e.lineno - 1]
    starts = [m.start() for m in re.finditer(r"\{\{|\{%|\{#", line)]
    return (starts[-1] + 1) if starts else 1


def variables_used(source: str) -> set[str]:
    """Top-level names a template reads (contact, data, …), for the editor's hints."""
    try:
        return meta.find_undeclared_variables(SANDBOXES[False].parse(source)) - {"range"}
    except TemplateSyntaxError:
        return set()


# --- rendering ------------------------------------------------------------------------------


class BudgetedRange:
    """range() for templates, drawing every item from the render's budget."""

    def __init__(self) -> None:
        self.left = RANGE_BUDGET

    def __call__(self, *args: int) -> Iterator[int]:
        items = range(*args)
        if len(items) > self.left:
            raise SecurityError(f"loops may run {RANGE_BUDGET:,} times in all")
        self.left -= len(items)
        return iter(items)


@dataclass
class Watch:
    thread_id: int
    deadline: float
    fired: bool = False


class Watchdog:
    """Raises RenderTimeout inside renders that pass their deadline (an asynchronous
    exception, delivered between two bytecodes of the template's compiled Python)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.watches: dict[int, Watch] = {}
        self.thread: threading.Thread | None = None

    def start(self, seconds: float) -> Watch:
        watch = Watch(threading.get_ident(), time.monotonic() + seconds)
        with self.lock:
            self.watches[watch.thread_id] = watch
            if self.thread is None:
                self.thread = threading.Thread(target=self.run, name="render-watchdog")
                self.thread.daemon = True
                self.thread.start()
        return watch

    def stop(self, watch: Watch) -> None:
        with self.lock:
            self.watches.pop(watch.thread_id, None)
            if watch.fired:
                # Fired as the render ended: take back an exception not yet delivered.
                set_async_exception(watch.thread_id, None)

    def run(self) -> None:
        while True:
            time.sleep(0.02)
            now = time.monotonic()
            with self.lock:
                for watch in self.watches.values():
                    if not watch.fired and now > watch.deadline:
                        watch.fired = True
                        set_async_exception(watch.thread_id, RenderTimeout)


def set_async_exception(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None
    )


watchdog = Watchdog()


def render(template, context: dict[str, Any], seconds: float = RENDER_SECONDS) -> str:
    """Render with plain data only. Raises RenderTimeout, SecurityError (a template reaching
    for what it may not) or another error of the template's own (1/0, a bad filter)."""
    return "".join(render_chunks(template, context, seconds))


def render_chunks(template, context: dict[str, Any], seconds: float = RENDER_SECONDS) -> list:
    """The output as the template made it: its constant text as the very same string objects
    every time, the values in between. Lets a caller encode the constant parts once."""
    watch = watchdog.start(seconds)
    try:
        out, size = [], 0
        for chunk in template.generate({**context, "range": BudgetedRange()}):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise SecurityError(f"the message would be over {MAX_OUTPUT:,} characters")
            out.append(chunk)
        return out
    except RenderTimeout:
        raise RenderTimeout(f"the template took more than {seconds:g} s to render") from None
    finally:
        watchdog.stop(watch)
