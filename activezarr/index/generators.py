"""kerchunk version 1 ``gen`` entries expanded into references, without a template engine.

The specification (kerchunk ``docs/source/spec.rst``) describes each entry as::

    {"key": "data/{{i}}", "url": "{{u}}/part_{{i}}.bin",
     "offset": "{{(i + 1) * 1000}}", "length": "1000",
     "dimensions": {"i": {"start": 0, "stop": 5, "step": 1}}}

and fsspec renders the four strings with jinja2 for every point of the product of the
dimensions (a dimension is a ``range`` given by start/stop/step, or a list of values).
Here each ``{{ expression }}`` is evaluated by a small interpreter that knows integers,
strings, the dimension and template names, parentheses and ``+ - * // % /`` (jinja's ``/``
gives a float, kept only when it is whole). Anything else (filters, attribute access, calls)
is refused with ``IndexLoadError`` rather than rendered differently from fsspec. The number of
generated references is bounded before any is made.
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
import re
from typing import Any

from ..errors import IndexLoadError

EXPRESSION = re.compile(r"{{(.*?)}}", re.DOTALL)
OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Div: operator.truediv,
}
MAX_EXPRESSION = 200


def expand(gen: Any, templates: dict[str, str], where: str, limit: int) -> dict[str, list]:
    """Every reference the ``gen`` list describes; at most ``limit`` of them."""
    if not isinstance(gen, list):
        raise IndexLoadError(f"{where}: 'gen' must be a list of generators")
    entries = [_entry(g, i, where) for i, g in enumerate(gen)]
    total = sum(math.prod(len(d) for d in dims.values()) for _, dims in entries)
    if total > limit:
        raise IndexLoadError(f"{where}: 'gen' makes {total:,} references; at most {limit:,}")
    out: dict[str, list] = {}
    for (i, g), (_, dims) in zip(enumerate(gen), entries, strict=True):
        at = f"{where}: gen[{i}]"
        for values in itertools.product(*dims.values()):
            names = {**templates, **dict(zip(dims, values, strict=True))}
            key = _render(g["key"], names, at)
            url = _render(g["url"], names, at)
            if "offset" in g:
                offset = _render_int(g["offset"], names, f"{at} offset")
                length = _render_int(g["length"], names, f"{at} length")
                out[key] = [url, offset, length]
            else:
                out[key] = [url]
    return out


def _entry(g: Any, i: int, where: str) -> tuple[int, dict[str, Any]]:
    at = f"{where}: gen[{i}]"
    if not isinstance(g, dict) or not isinstance(g.get("key"), str):
        raise IndexLoadError(f"{at} must be an object with a 'key' template")
    if not isinstance(g.get("url"), str):
        raise IndexLoadError(f"{at} needs a 'url' template")
    if ("offset" in g) != ("length" in g):
        raise IndexLoadError(f"{at} needs both 'offset' and 'length', or neither")
    for name in ("offset", "length"):
        if name in g and not isinstance(g[name], str | int):
            raise IndexLoadError(f"{at}: '{name}' must be a template string or an integer")
    dims = g.get("dimensions")
    if not isinstance(dims, dict) or not dims:
        raise IndexLoadError(f"{at} needs 'dimensions'")
    out: dict[str, Any] = {}
    for name, spec in dims.items():
        if not name.isidentifier():
            raise IndexLoadError(f"{at}: dimension name {name!r:.40} is not a name")
        if isinstance(spec, list):
            if not all(isinstance(v, int | str) and not isinstance(v, bool) for v in spec):
                raise IndexLoadError(f"{at}: dimension '{name}' values must be ints or strings")
            out[name] = spec
        elif isinstance(spec, dict) and all(
            isinstance(spec.get(k, 1), int) and not isinstance(spec.get(k, 1), bool)
            for k in ("start", "stop", "step")
        ):
            if "stop" not in spec or spec.get("step", 1) == 0:
                raise IndexLoadError(f"{at}: dimension '{name}' needs 'stop' and a non-zero step")
            out[name] = range(spec.get("start", 0), spec["stop"], spec.get("step", 1))
        else:
            raise IndexLoadError(f"{at}: dimension '{name}' must be a list or start/stop/step")
    return i, out


def _render(template: Any, names: dict[str, Any], where: str) -> str:
    if isinstance(template, int) and not isinstance(template, bool):
        return str(template)
    return EXPRESSION.sub(lambda m: str(_evaluate(m.group(1), names, where)), template)


def _render_int(template: Any, names: dict[str, Any], where: str) -> int:
    text = _render(template, names, where).strip()
    if not re.fullmatch(r"-?[0-9]{1,19}", text):
        raise IndexLoadError(f"{where} renders as {text!r:.40}, not an integer")
    return int(text)


def _evaluate(expression: str, names: dict[str, Any], where: str) -> Any:
    if len(expression) > MAX_EXPRESSION:
        raise IndexLoadError(f"{where}: template expression is too long")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise IndexLoadError(
            f"{where}: {{{{{expression.strip()!s:.60}}}}} is not an expression activezarr "
            "evaluates (names, integers, + - * / // % and parentheses)"
        ) from None
    return _node(tree.body, names, where, expression)


def _node(node: ast.AST, names: dict[str, Any], where: str, text: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | str):
        if not isinstance(node.value, bool):
            return node.value
    elif isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise IndexLoadError(f"{where}: '{node.id}' in {{{{{text.strip()}}}}} is not defined")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _node(node.operand, names, where, text)
        if isinstance(value, int):
            return -value
    elif isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        left = _node(node.left, names, where, text)
        right = _node(node.right, names, where, text)
        if isinstance(left, int) and isinstance(right, int):
            if isinstance(node.op, ast.FloorDiv | ast.Mod | ast.Div) and right == 0:
                raise IndexLoadError(f"{where}: division by zero in {{{{{text.strip()}}}}}")
            if isinstance(node.op, ast.Mult) and abs(left) * abs(right) > 2**64:
                raise IndexLoadError(f"{where}: {{{{{text.strip()}}}}} is out of range")
            value = OPERATORS[type(node.op)](left, right)
            if isinstance(value, float):
                if not value.is_integer():
                    raise IndexLoadError(f"{where}: {{{{{text.strip()}}}}} is not a whole number")
                value = int(value)
            return value
        if isinstance(node.op, ast.Add) and isinstance(left, str) and isinstance(right, str):
            if len(left) + len(right) > 4096:
                raise IndexLoadError(f"{where}: {{{{{text.strip()}}}}} is too long")
            return left + right
    raise IndexLoadError(
        f"{where}: {{{{{text.strip()!s:.60}}}}} uses syntax activezarr does not evaluate "
        "(names, integers, + - * / // % and parentheses only)"
    )
