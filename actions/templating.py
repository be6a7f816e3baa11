"""The template language of subscription actions: a vetted part of Django's, bounded.

Action fields (a webhook's body, a republish topic and payload, an alert's value and
message, an e-mail's subject and body) are rendered for every matching message and
are written by anyone with the operator role, so the language is chosen here rather
than inherited from the site's engine:

- Nothing is escaped: bodies are JSON, topics and plain text, never HTML. The
  `json` filter embeds a value as JSON (strings quoted and escaped, NaN and
  infinities as null, as JavaScript's JSON.stringify writes them).
- A dedicated Engine with no loaders and none of Django's libraries: only the tags
  in TAGS and the filters in FILTERS exist, so `include`, `extends`, `load`,
  `debug`, `lorem`, `url`... are unknown tags and refused when the action is saved.
- Padding widths and number formats are capped (`ljust:"20000000"` would allocate
  20 MB from a 20-byte template).
- Every render has a budget (Budget): steps (nodes rendered, loop iterations, filter
  calls), characters produced, and wall-clock time. Steps and characters are
  counted, so a dry run fails exactly where a real run would; the clock is a
  backstop for one slow operation between two counts. Leaf nodes are charged their
  output, loops one step per iteration (an empty nested loop produces nothing but
  still burns CPU), filters one step and their result's size (a `{% with %}` chain
  of `add` doubles a value at each level). An exhausted budget stays exhausted: an
  error swallowed by `{% if %}` is raised again when the render ends.
"""

from __future__ import annotations

import contextvars
import functools
import json
import math
import re
import time
from collections.abc import Callable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.template import (
    Context,
    Engine,
    Library,
    Node,
    NodeList,
    Template,
    defaultfilters,
    defaulttags,
)
from django.template.defaulttags import ForNode, IfNode
from django.utils.translation import gettext as _

register = Library()

# Per render. Generous for any real template (a 1,000-item JSON array looped over
# with ten fields each is about 22,000 steps), small enough that a hostile one
# ends in well under a second.
MAX_STEPS = 100_000
# Characters a render may produce, on top of the payload's own length (so the
# default `{{ payload_text }}` passes any payload the broker accepts).
MAX_OUTPUT_CHARS = 1024 * 1024
MAX_SECONDS = 1.0
# Per template field, checked when the action is saved.
MAX_TEMPLATE_CHARS = 20_000
# ljust, rjust, center; stringformat's width and precision; floatformat's digits.
MAX_WIDTH = 1000
MAX_FORMAT_WIDTH = 100
MAX_DIGITS = 50

TAGS = (
    "comment",
    "cycle",
    "filter",
    "firstof",
    "for",
    "if",
    "ifchanged",
    "now",
    "regroup",
    "resetcycle",
    "templatetag",
    "verbatim",
    "widthratio",
    "with",
)
# Django's filters kept as they are; ljust, rjust, center, stringformat,
# floatformat and join are wrapped with their caps, json is ours. Left out: the
# HTML ones (escape, linebreaks, urlize, striptags...), pprint (dumps objects) and
# random (a dry run must show what a run does).
PLAIN_FILTERS = (
    "add",
    "addslashes",
    "capfirst",
    "cut",
    "date",
    "default",
    "default_if_none",
    "dictsort",
    "dictsortreversed",
    "divisibleby",
    "filesizeformat",
    "first",
    "get_digit",
    "last",
    "length",
    "lower",
    "make_list",
    "pluralize",
    "safe",
    "slice",
    "slugify",
    "time",
    "timesince",
    "timeuntil",
    "title",
    "truncatechars",
    "truncatewords",
    "upper",
    "urlencode",
    "wordcount",
    "wordwrap",
    "yesno",
)
CAPPED_FILTERS = ("center", "floatformat", "join", "ljust", "rjust", "stringformat")
FILTERS = tuple(sorted((*PLAIN_FILTERS, *CAPPED_FILTERS, "json")))


class TemplateRenderError(Exception):
    """A template failed or ran out of budget while rendering."""


class Budget:
    """What one render may still spend; see the module docstring."""

    def __init__(self, extra_chars: int = 0) -> None:
        self.steps = MAX_STEPS
        self.chars = MAX_OUTPUT_CHARS + extra_chars
        self.max_value = self.chars
        self.deadline = time.monotonic() + MAX_SECONDS
        self.exceeded = ""

    def spend(self, steps: int = 1, chars: int = 0) -> None:
        if not self.exceeded:
            self.steps -= steps
            self.chars -= chars
            if self.steps < 0:
                self.exceeded = _(
                    "the template takes more than %(max)d steps (loop iterations, "
                    "values and filters) for this message"
                ) % {"max": MAX_STEPS}
            elif self.chars < 0:
                self.exceeded = _(
                    "the template produces more than %(max)d characters"
                ) % {"max": self.max_value}
            elif time.monotonic() > self.deadline:
                self.exceeded = _(
                    "the template takes longer than %(max)s seconds to render"
                ) % {"max": MAX_SECONDS}
        if self.exceeded:
            raise TemplateRenderError(self.exceeded)

    def check_value(self, size: int) -> None:
        if size > self.max_value:
            self.exceeded = self.exceeded or _(
                "a value in the template grows past %(max)d characters"
            ) % {"max": self.max_value}
            raise TemplateRenderError(self.exceeded)


_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "action_template_budget", default=None
)


def _spend(steps: int = 1, chars: int = 0) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.spend(steps, chars)


# --- Filters ----------------------------------------------------------------------


def _bounded(func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that costs a step and may not return a value past the budget."""

    @functools.wraps(func)
    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget.get()
        if budget is not None:
            budget.spend()
        try:
            result = func(value, *args, **kwargs)
        except TemplateRenderError as exc:
            if budget is not None:
                # Kept: `{% if %}` swallows errors, the render must still fail.
                budget.exceeded = budget.exceeded or str(exc)
            raise
        if budget is not None and isinstance(result, str | list | tuple | dict):
            budget.check_value(len(result))
        return result

    return bounded


def _register_filter(name: str, func: Callable[..., Any]) -> None:
    flags = {
        flag: getattr(func, flag)
        for flag in ("is_safe", "needs_autoescape", "expects_localtime")
        if hasattr(func, flag)
    }
    register.filter(name, _bounded(func), **flags)


def _int_arg(name: str, arg: Any) -> int:
    try:
        return int(arg)
    except (TypeError, ValueError):
        raise TemplateRenderError(
            _("%(filter)s: %(arg)r is not a whole number")
            % {"filter": name, "arg": arg}
        ) from None


def _padding(name: str, pad: Callable[[str, int], str]) -> Callable[[Any, Any], str]:
    def padded(value: Any, arg: Any) -> str:
        width = _int_arg(name, arg)
        if width > MAX_WIDTH:
            raise TemplateRenderError(
                _("%(filter)s: the width is at most %(max)d")
                % {"filter": name, "max": MAX_WIDTH}
            )
        return pad(str(value), width)

    padded.__name__ = name
    return padded


FORMAT_SPEC = re.compile(r"^[#0\- +]*(\d*)(?:\.(\d*))?[a-zA-Z]$")


def stringformat(value: Any, arg: Any) -> str:
    """Django's stringformat with its width and precision capped."""
    match = FORMAT_SPEC.match(str(arg))
    if not match:
        raise TemplateRenderError(
            _("stringformat: %(arg)r is not a format such as “.2f” or “05d”")
            % {"arg": arg}
        )
    if any(int(part or 0) > MAX_FORMAT_WIDTH for part in match.groups()):
        raise TemplateRenderError(
            _("stringformat: width and precision are at most %(max)d")
            % {"max": MAX_FORMAT_WIDTH}
        )
    return defaultfilters.stringformat(value, arg)


def floatformat(value: Any, arg: Any = -1) -> str:
    """Django's floatformat with at most MAX_DIGITS decimal places."""
    digits = str(arg).rstrip("gu") or "-1"
    if abs(_int_arg("floatformat", digits)) > MAX_DIGITS:
        raise TemplateRenderError(
            _("floatformat: at most %(max)d decimal places") % {"max": MAX_DIGITS}
        )
    return defaultfilters.floatformat(value, arg)


def join(value: Any, arg: Any, autoescape: bool = True) -> Any:
    """Django's join, refused before it builds a string past the budget (a payload
    joined with itself as the separator is the payload's length squared)."""
    budget = _budget.get()
    if budget is not None and isinstance(value, list | tuple):
        size = sum(len(str(item)) for item in value)
        size += len(str(arg)) * max(len(value) - 1, 0)
        budget.check_value(size)
    return defaultfilters.join(value, arg, autoescape=False)


# Django reads this flag off the filter function; functions have no such attribute
# in their type.
join.needs_autoescape = True  # type: ignore[attr-defined]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def json_filter(value: Any) -> str:
    """The value as JSON: `{"t": {{ payload.temp|json }}}` stays valid JSON whatever
    the payload holds (quotes, line breaks, nested objects)."""
    try:
        return json.dumps(
            value, cls=DjangoJSONEncoder, ensure_ascii=False, allow_nan=False
        )
    except ValueError:
        return json.dumps(_finite(value), cls=DjangoJSONEncoder, ensure_ascii=False)
    except (TypeError, RecursionError) as exc:
        raise TemplateRenderError(_("json: %s") % exc) from None


for _name in PLAIN_FILTERS:
    _register_filter(_name, defaultfilters.register.filters[_name])
for _name, _pad in (("ljust", str.ljust), ("rjust", str.rjust), ("center", str.center)):
    _register_filter(_name, _padding(_name, _pad))
_register_filter("stringformat", stringformat)
_register_filter("floatformat", floatformat)
_register_filter("join", join)
_register_filter("json", json_filter)

for _name in TAGS:
    register.tag(_name, defaulttags.register.tags[_name])


# --- Metering the compiled template ---------------------------------------------


class _LoopStep(Node):
    """First node of every loop body: one step per iteration."""

    child_nodelists = ()

    def render(self, context: Context) -> str:
        _spend()
        return ""

    def render_annotated(self, context: Context) -> str:
        return self.render(context)


def _metered(render: Callable[[Context], str]) -> Callable[[Context], str]:
    def metered(context: Context) -> str:
        output = render(context)
        _spend(1, len(output))
        return output

    return metered


def _meter(nodelist: NodeList) -> None:
    """Charge every leaf its output and every loop iteration a step."""
    for node in nodelist:
        if isinstance(node, _LoopStep):
            continue
        if isinstance(node, ForNode):
            # django-stubs types a NodeList's items as str.
            node.nodelist_loop.insert(0, _LoopStep())  # type: ignore[arg-type]
        if isinstance(node, IfNode):
            children = [branch for _condition, branch in node.conditions_nodelists]
        else:
            children = [
                child
                for child in (
                    getattr(node, name, None) for name in node.child_nodelists
                )
                if child
            ]
        if children:
            for child in children:
                _meter(child)
        else:
            # An instance attribute: only this engine's nodes are metered.
            # django-stubs: render_annotated returns int | str (it returns str).
            node.render_annotated = _metered(node.render_annotated)  # type: ignore[method-assign,assignment,arg-type]


class _ActionEngine(Engine):
    # Not defaulttags, defaultfilters and loader_tags: only this module's library.
    default_builtins: list[str] = []


@functools.cache
def engine() -> Engine:
    """The engine of action templates (built on first use: it imports this module)."""
    return _ActionEngine(
        loaders=[],
        libraries={},
        builtins=[__name__],
        autoescape=False,
        string_if_invalid="",
    )


@functools.lru_cache(maxsize=512)
def compile_template(source: str) -> Template:
    """The metered, compiled template (raises TemplateSyntaxError and the like);
    compiled templates are kept, as rendering runs for every message."""
    template = engine().from_string(source)
    _meter(template.nodelist)
    return template


def template_problem(source: str) -> str | None:
    """Why `source` cannot be saved as an action template, or None."""
    if len(source) > MAX_TEMPLATE_CHARS:
        return _("a template is at most %(max)d characters") % {
            "max": MAX_TEMPLATE_CHARS
        }
    try:
        compile_template(source)
    except Exception as exc:  # Django's parser raises more than TemplateSyntaxError.
        return _explained(str(exc) or exc.__class__.__name__)
    return None


UNKNOWN_TAG = re.compile(r"^Invalid block tag on line (\d+): '([^']*)'")
UNKNOWN_FILTER = re.compile(r"^Invalid filter: '([^']*)'")


def _explained(problem: str) -> str:
    """Django's parser suggests {% load %} for an unknown tag: say what exists."""
    if match := UNKNOWN_TAG.match(problem):
        return _(
            "line %(line)s: the tag “%(tag)s” is not available in action templates "
            "(tags: %(tags)s)"
        ) % {"line": match[1], "tag": match[2], "tags": ", ".join(TAGS)}
    if match := UNKNOWN_FILTER.match(problem):
        return _(
            "the filter “%(filter)s” is not available in action templates "
            "(filters: %(filters)s)"
        ) % {"filter": match[1], "filters": ", ".join(FILTERS)}
    return problem


def render_bounded(source: str, context: dict[str, Any]) -> str:
    """Render `source` on `context` without escaping, within a Budget; every failure
    is a TemplateRenderError."""
    payload_text = context.get("payload_text")
    budget = Budget(len(payload_text) if isinstance(payload_text, str) else 0)
    token = _budget.set(budget)
    try:
        output = compile_template(source).render(Context(context, autoescape=False))
    except TemplateRenderError:
        raise
    except RecursionError:
        raise TemplateRenderError(_("the template nests too deeply")) from None
    except Exception as exc:
        problem = _explained(str(exc) or exc.__class__.__name__)
        raise TemplateRenderError(problem) from exc
    finally:
        _budget.reset(token)
    if budget.exceeded:
        # Spent inside an {% if %}, which swallows errors: still a failure.
        raise TemplateRenderError(budget.exceeded)
    return output
