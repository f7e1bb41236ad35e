"""The personalisation sandbox: the known escapes fail safely, sizes and time are bounded,
a missing variable never fails, and syntax errors say where."""

from __future__ import annotations

import threading
import time

from django.test import SimpleTestCase
from jinja2 import UndefinedError
from jinja2.sandbox import SecurityError

from postroom.content.sandbox import (
    RenderTimeout,
    TemplateProblem,
    compile_template,
    render,
    variables_used,
)

CONTEXT = {
    "contact": {"first_name": "Ann", "email": "ann@example.com", "data": {"plan": "pro"}},
    "data": {"items": [{"name": "Tulips"}], "total": 12},
}


def out(source: str, html: bool = True, context: dict | None = None) -> str:
    return render(compile_template(source, html=html), context or CONTEXT)


class SandboxEscapeTestCase(SimpleTestCase):
    """Each of these reaches for Python internals. They must render nothing or raise
    SecurityError: never a class, a function, a module or a global."""

    ESCAPES = [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ contact.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ contact|attr('__class__') }}",
        "{{ (contact|attr('__class__')|attr('__base__')).__subclasses__() }}",
        "{{ data['items'].__class__.__base__ }}",
        "{{ config }}{{ request }}{{ settings }}{{ os }}{{ __builtins__ }}",
        "{{ ''.format.__globals__ }}",
        "{{ '{0.__class__}'.format(contact) }}",
        "{{ '%s'.__mod__ }}",
        "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ lipsum.__globals__ }}",
        "{{ range.__self__ }}",
        "{{ contact.items().__iter__ }}",
    ]

    def test_every_known_escape_fails_safely(self) -> None:
        for source in self.ESCAPES:
            with self.subTest(source):
                try:
                    result = out(source)
                except (SecurityError, UndefinedError):
                    continue
                for leak in ("<class", "<function", "<module", "<built-in", "os", "object"):
                    self.assertNotIn(leak, result)

    def test_data_cannot_be_changed(self) -> None:
        for source in (
            "{% set x = contact.update({'first_name': 'Eve'}) %}",
            "{{ data['items'].append(1) }}",
            "{{ contact.data.pop('plan') }}",
            "{{ contact.clear() }}",
        ):
            with self.subTest(source), self.assertRaises(SecurityError):
                out(source)
        self.assertEqual(CONTEXT["contact"]["first_name"], "Ann")

    def test_names_are_html_escaped_in_the_html_part_only(self) -> None:
        context = {"contact": {"first_name": "<script>x</script>"}}
        self.assertEqual(
            out("{{ contact.first_name }}", context=context), "&lt;script&gt;x&lt;/script&gt;"
        )
        self.assertEqual(
            out("{{ contact.first_name }}", html=False, context=context), "<script>x</script>"
        )


class SandboxLimitsTestCase(SimpleTestCase):
    def test_huge_values_are_refused(self) -> None:
        for source in (
            "{{ 'a' * 10000000 }}",
            "{{ [1] * 10000000 }}",
            "{{ 10 ** 1000000 }}",
            "{{ '%9999999d' | format(1) }}",
            "{{ '%*d' | format(9999999, 1) }}",
            "{{ '%9999999d' % 1 }}",
            "{{ '{:>9999999}'.format(1) }}",
            "{{ 'x' | center(10000000) }}",
            "{{ 'x' | indent(10000000) }}",
            "{{ ('a' * 1000) | replace('a', 'b' * 1000) }}",
        ):
            with self.subTest(source), self.assertRaises(SecurityError):
                out(source)

    def test_loops_draw_on_a_budget(self) -> None:
        self.assertEqual(out("{% for i in range(3) %}{{ i }}{% endfor %}"), "012")
        with self.assertRaises(SecurityError):
            out("{% for i in range(100) %}{% for j in range(1000) %}{% endfor %}{% endfor %}")

    def test_a_slow_render_is_stopped(self) -> None:
        slow = "{% for a in [1]*500 %}{% for b in [1]*500 %}{% for c in [1]*500 %}"
        slow += "{% endfor %}{% endfor %}{% endfor %}"
        started = time.monotonic()
        with self.assertRaises(RenderTimeout):
            render(compile_template(slow, html=True), CONTEXT, seconds=0.2)
        self.assertLess(time.monotonic() - started, 2)
        # The thread is fine afterwards: no exception is left pending for later code.
        time.sleep(0.1)
        self.assertEqual(out("ok"), "ok")

    def test_a_slow_render_in_another_thread_is_stopped_too(self) -> None:
        slow = "{% for a in [1]*500 %}{% for b in [1]*500 %}{% for c in [1]*500 %}"
        slow += "{% endfor %}{% endfor %}{% endfor %}"
        errors = []

        def run():
            try:
                render(compile_template(slow, html=True), CONTEXT, seconds=0.2)
            except RenderTimeout as e:
                errors.append(e)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(5)
        self.assertEqual(len(errors), 1)

    def test_recursion_fails_as_an_error(self) -> None:
        with self.assertRaises(RecursionError):
            out("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}")


class PersonalisationTestCase(SimpleTestCase):
    def test_missing_variables_render_empty_or_their_default(self) -> None:
        self.assertEqual(out("[{{ contact.last_name }}]"), "[]")
        self.assertEqual(out("[{{ contact.data.city.name }}]"), "[]")
        self.assertEqual(out("{{ nobody.at.all }}|"), "|")
        self.assertEqual(out("Hi {{ contact.nickname | default('there') }}"), "Hi there")
        self.assertEqual(out("{% if contact.data.vip %}VIP{% else %}-{% endif %}"), "-")

    def test_data_keys_come_before_dict_methods(self) -> None:
        self.assertEqual(out("{% for i in data.items %}{{ i.name }}{% endfor %}"), "Tulips")

    def test_conditions_loops_and_filters_work(self) -> None:
        source = "{{ contact.first_name | upper }} {{ data.total * 2 }} {{ data['items']|length }}"
        self.assertEqual(out(source), "ANN 24 1")

    def test_syntax_errors_name_the_line_and_column(self) -> None:
        with self.assertRaises(TemplateProblem) as caught:
            compile_template("Hello\nDear {{ contact.first_name\n", html=True)
        self.assertEqual((caught.exception.line, caught.exception.column), (2, 6))
        self.assertIn("line 2, column 6", str(caught.exception))
        with self.assertRaises(TemplateProblem) as caught:
            compile_template("{% if contact %}open", html=True)
        self.assertEqual(caught.exception.line, 1)

    def test_it_lists_the_variables_a_template_reads(self) -> None:
        self.assertEqual(
            variables_used("{{ contact.first_name }} {% for i in data.items %}{{ i }}{% endfor %}"),
            {"contact", "data"},
        )


class SandboxReviewFindingsTestCase(SimpleTestCase):
    """What a review of the sandbox found, each now refused or fixed."""

    def test_c_level_blowups_are_refused_before_they_run(self) -> None:
        for source in (
            "{{ ([[1]*10000]*1000)|sum(start=[]) }}",
            "{% set c = ((10**100)**100)**100 %}{{ c }}",
            "{{ 2**100 * 2**100 * 2**100 * 2**100 * 2**4000 }}",
            "{{ ([('x' * 100000)] * 40000)|join }}",
            "{% set ns = namespace(s='x' * 50000) %}{% for i in range(60) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "{% set ns = namespace(s=['x']) %}{% for i in range(60) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "{{ '%(a)50000000s' % {'a': 1} }}",
            "{{ '%(a)50000000s' | format(a=1) }}",
            "{{ 'x' | indent('y' * 50000) }}",
            "{{ [1] | batch(50000000, 0) | list }}",
            "{{ data | tojson(indent=10000000) }}",
            "{{ 'a b' | wordwrap(3, wrapstring='z' * 100000) }}",
        ):
            with self.subTest(source):
                started = time.monotonic()
                with self.assertRaises(SecurityError):
                    out(source)
                self.assertLess(time.monotonic() - started, 1)

    def test_size_taking_filters_still_work(self) -> None:
        self.assertEqual(out("{{ 'hello world' | truncate(8, leeway=0) }}"), "hello...")
        self.assertEqual(out("{{ 'a b c' | wordwrap(3) }}", html=False), "a b\nc")
        self.assertEqual(out("[{{ 'ab' | center(6) }}]"), "[  ab  ]")
        self.assertEqual(out("{{ 'a\nb' | indent(2) }}", html=False), "a\n  b")
        self.assertEqual(out("{{ [1, 2, 3] | sum }}"), "6")
        self.assertEqual(out("{{ ['a', 'b'] | join(', ') }}"), "a, b")
        self.assertEqual(out("{{ 'a' ~ 1 ~ contact.first_name }}"), "a1Ann")

    def test_a_render_cannot_sign_links_for_another_message(self) -> None:
        import uuid

        from postroom.lib.signing import unsign
        from postroom.tracking.links import CLICK

        mine, theirs = uuid.uuid4(), uuid.uuid4()
        source = f'{{% set _message = "{theirs.hex}" %}}{{{{ tracked("https://x.example/") }}}}'
        link = out(source, html=False, context={**CONTEXT, "_message": mine.hex})
        token = link.split("/c/")[1].split("?")[0]
        self.assertEqual(unsign(CLICK, token, b"https://x.example/"), mine)

    def test_the_deadline_cannot_be_swallowed_by_jinjas_own_handlers(self) -> None:
        slow = "{% for a in [1]*300 %}{% for b in [1]*300 %}{% for c in [1]*300 %}"
        slow += "{% if nothing is sequence %}{% endif %}{% endfor %}{% endfor %}{% endfor %}"
        started = time.monotonic()
        with self.assertRaises(RenderTimeout):
            render(compile_template(slow, html=True), CONTEXT, seconds=0.1)
        self.assertLess(time.monotonic() - started, 3)
