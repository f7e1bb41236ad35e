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
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import (
    ChainableUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    meta,
    nodes,
    pass_context,
    pass_environment,
    pass_eval_context,
)
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import (
    do_batch,
    do_center,
    do_indent,
    do_join,
    do_replace,
    do_tojson,
    do_truncate,
    do_wordwrap,
)
from jinja2.runtime import markup_join, str_join
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
WIDE_PRINTF = re.compile(
    r"%(?:\([^)]*\))?[#0\- +]*(?:\*|\d{4,})|%(?:\([^)]*\))?[#0\- +]*\d*\.(?:\*|\d{4,})"
)


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


class Deadline(BaseException):
    """What the watchdog raises inside a render past its deadline: a BaseException, so that
    no `except Exception` on the way (Jinja has some) can swallow it; render_chunks turns it
    into RenderTimeout."""


# What a render can raise for one recipient's data: the message fails with it, alone.
RENDER_ERRORS = (
    TemplateError,
    RenderTimeout,
    Deadline,
    ArithmeticError,
    AttributeError,
    LookupError,
    TypeError,
    ValueError,
    RecursionError,
    MemoryError,
)
# The message being rendered, for `tracked` and `open_pixel`: out of the template's reach
# (a `{% set %}` could rebind a context variable, and sign another message's links).
CURRENT_MESSAGE: ContextVar[str | None] = ContextVar("current_message", default=None)
# Integers beyond this many bits make C-level arithmetic that no watchdog can interrupt.
MAX_BITS = 4096


def check_bits(bits: int) -> None:
    if bits > MAX_BITS:
        raise SecurityError(f"numbers above {MAX_BITS} bits are not allowed")


def too_big(what: str) -> SecurityError:
    return SecurityError(f"{what} would be larger than {MAX_VALUE:,} characters")


def check_printf(fmt: Any) -> None:
    if isinstance(fmt, str) and WIDE_PRINTF.search(fmt):
        raise SecurityError("format widths above 999 are not allowed")


def sized(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def check_width(*values: Any) -> None:
    """A filter's width, length or padding argument: small, whether a number or a string."""
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_VALUE:
            raise too_big("the result")
        if isinstance(value, str) and len(value) > 100:
            raise SecurityError("padding strings longer than 100 characters are not allowed")


def safe_center(value, width=80):
    check_width(width)
    return do_center(value, width)


@pass_environment
def safe_indent(environment, s, width=4, first=False, blank=False):
    check_width(width)
    return do_indent(s, width, first, blank)


@pass_environment
def safe_wordwrap(environment, s, width=79, break_long_words=True, wrapstring=None, **kw):
    check_width(width, wrapstring)
    return do_wordwrap(environment, s, width, break_long_words, wrapstring, **kw)


@pass_environment
def safe_truncate(environment, s, length=255, killwords=False, end="...", leeway=None):
    check_width(length, end)
    return do_truncate(environment, s, length, killwords, end, leeway)


@pass_eval_context
def safe_join(eval_ctx, value, d="", attribute=None):
    items = list(value)
    if sum(len(str(x)) for x in items) + len(str(d)) * len(items) > MAX_OUTPUT:
        raise too_big("the joined text")
    return do_join(eval_ctx, items, d, attribute)


def safe_sum(iterable, attribute=None, start=0):
    """Numbers only: a sum of lists is a quadratic copy inside one C call."""
    if not isinstance(start, int | float):
        raise SecurityError("sum adds numbers only")
    total = start
    for item in iterable:
        value = item[attribute] if attribute is not None else item
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SecurityError("sum adds numbers only")
        total += value
    return total


def safe_batch(value, linecount, fill_with=None):
    check_width(linecount)
    if isinstance(linecount, int) and linecount > 1000:
        raise SecurityError("batches of more than 1,000 are not allowed")
    return do_batch(value, linecount, fill_with)


@pass_eval_context
def safe_tojson(eval_ctx, value, indent=None):
    if indent is not None and (not isinstance(indent, int) or indent > 8):
        raise SecurityError("tojson indents by at most 8")
    return do_tojson(eval_ctx, value, indent)


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
    for arg in (*args, *kwargs.values()):
        if sized(arg) > MAX_VALUE:
            raise too_big("the formatted text")
    result = str(value) % (kwargs or args)
    if len(result) > MAX_VALUE:
        raise too_big("the formatted text")
    return result


class CheckedConcat(CodeGenerator):
    """`a ~ b` through Sandbox.checked_concat, which checks the size first (a loop doubling a string
    would otherwise reach gigabytes inside one C call)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat(context, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = CheckedConcat

    def __init__(self, autoescape: bool):
        super().__init__(
            autoescape=autoescape, undefined=ChainableUndefined, keep_trailing_newline=True
        )
        for name in ("lipsum", "range"):
            self.globals.pop(name, None)
        self.filters.update(
            center=safe_center,
            indent=safe_indent,
            wordwrap=safe_wordwrap,
            truncate=safe_truncate,
            replace=safe_replace,
            format=safe_format,
            join=safe_join,
            sum=safe_sum,
            batch=safe_batch,
            tojson=safe_tojson,
        )
        for name in ("pprint", "xmlattr"):  # of no use in an email, of some risk
            self.filters.pop(name, None)

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if sized(seq) and isinstance(n, int) and sized(seq) * n > MAX_VALUE:
                    raise too_big("the repeated value")
            if isinstance(left, int) and isinstance(right, int):
                check_bits(left.bit_length() + right.bit_length())
        elif operator == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise SecurityError("exponents above 100 are not allowed")
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                check_bits(left.bit_length() * right)
        elif operator == "%" and isinstance(left, str):
            check_printf(left)
            if isinstance(right, str | tuple) and sized(right) > MAX_VALUE:
                raise too_big("the formatted text")
        elif operator == "+" and sized(left) + sized(right) > MAX_OUTPUT:
            raise too_big("the joined value")
        return super().call_binop(context, operator, left, right)

    def checked_concat(self, context, values: tuple) -> str:
        if sum(sized(v) if sized(v) else len(str(v)) for v in values) > MAX_OUTPUT:
            raise too_big("the joined text")
        return (markup_join if context.eval_ctx.autoescape else str_join)(values)

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
    # The filter form gets an href's text, HTML-escaped (&amp;), in the text part too.
    text = html.unescape(str(url)).strip()
    code = CURRENT_MESSAGE.get()
    if not code or not TRACKABLE.match(text):
        return text
    return links_for(code).click(text)


@pass_context
def open_pixel(context) -> Markup:
    code = CURRENT_MESSAGE.get()
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


# Templates compiled lately in this process, by (html, source): the send API compiles the
# same few templates request after request, and compiling is most of its work. Jinja's
# from_string() keeps no cache of its own. Small sources only, and a bounded number.
COMPILED_CACHE_SIZE = 256
COMPILED_CACHE_MAX_SOURCE = 64 * 1024
_compiled: OrderedDict[tuple[bool, str], Template] = OrderedDict()
_compiled_lock = threading.Lock()


def compile_template(source: str, html: bool):
    """A compiled template, or TemplateProblem naming the line (and column, when found)."""
    key = (html, source)
    with _compiled_lock:
        template = _compiled.get(key)
        if template is not None:
            _compiled.move_to_end(key)
            return template
    template = compile_uncached(source, html)
    if len(source) <= COMPILED_CACHE_MAX_SOURCE:
        with _compiled_lock:
            _compiled[key] = template
            if len(_compiled) > COMPILED_CACHE_SIZE:
                _compiled.popitem(last=False)
    return template


def compile_uncached(source: str, html: bool):
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
                        # Once is enough: the exception waits for the C call it lands in to
                        # return, and no `except Exception` can catch a BaseException.
                        watch.fired = True
                        set_async_exception(watch.thread_id, Deadline)


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
    token = CURRENT_MESSAGE.set(context.get("_message"))
    watch = watchdog.start(seconds)
    try:
        out, size = [], 0
        for chunk in template.generate({**context, "range": BudgetedRange()}):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise SecurityError(f"the message would be over {MAX_OUTPUT:,} characters")
            out.append(chunk)
        return out
    except Deadline:
        raise RenderTimeout(f"the template took more than {seconds:g} s to render") from None
    finally:
        # A Deadline landing after the render's last step but before this stop escapes as
        # Deadline: callers catch it with RENDER_ERRORS.
        watchdog.stop(watch)
        CURRENT_MESSAGE.reset(token)
