"""n8n expressions → CEL, for the subset that means the same in both.

An n8n parameter whose text starts with `=` is a template: its `{{ }}` hold JavaScript. Only
a small, side-effect-free part of JavaScript says the same thing in CEL: references to the
incoming item (`$json.a`) or to another node's item (`$('Node').item.json.a`,
`$node["Node"].json.a`), literals, comparisons, arithmetic, `!`, `&&`/`||` between boolean
expressions, the ternary and `.length`. Everything else (method calls, `$now`, `Math`,
`||` used for a default value …) raises `Untranslatable` with the reason: the caller then
keeps the node verbatim as an n8n step and reports it, rather than guessing.

How a reference reads in flowpin depends on the graph (a webhook's body is the run's inputs,
an HTTP node's item is its response body), so the caller passes a `Resolve` function.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from controller.model import cel

Segment = str | int
# (node name, or None for the incoming item; the path read from its item) → CEL
Resolve = Callable[[str | None, Sequence[Segment]], str]

_CEL_RESERVED = frozenset(
    {"as", "break", "const", "continue", "else", "false", "for", "function", "if", "import"}
    | {"in", "let", "loop", "package", "namespace", "null", "return", "true", "var", "void"}
    | {"while"}
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<ident>[A-Za-z_$][A-Za-z0-9_$]*)
      | (?P<op>===|!==|==|!=|<=|>=|&&|\|\||[<>!+\-*/%?:.\[\](),])
    )""",
    re.VERBOSE,
)
MAX_EXPRESSION = 10_000  # characters, as for CEL in manifests (controller.model.cel)
MAX_NESTING = 32  # parentheses and unary operators; the parser recurses on each
_JS_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}

# Precedence of what a fragment's outermost operator binds, to parenthesize only when needed.
_TERNARY, _OR, _AND, _EQ, _REL, _ADD, _MUL, _UNARY, _ATOM = range(1, 10)


class Untranslatable(ValueError):
    """The expression has no CEL with the same meaning; the message says what stands in
    the way."""


@dataclass(frozen=True)
class _Fragment:
    cel: str
    level: int
    boolean: bool = False  # syntactically a truth value (comparison, !, true/false)

    def at(self, level: int) -> str:
        return self.cel if self.level >= level else f"({self.cel})"


def cel_field(name: str) -> str:
    """`.name` when CEL can read it as a field, `["name"]` otherwise."""
    if _IDENT.match(name) and name not in _CEL_RESERVED:
        return f".{name}"
    return f"[{cel_literal(name)}]"


def cel_path(base: str, path: Sequence[Segment]) -> str:
    return base + "".join(f"[{p}]" if isinstance(p, int) else cel_field(p) for p in path)


def cel_literal(value: Any) -> str:
    """A JSON value written as a CEL literal (JSON's string escapes are CEL's)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise Untranslatable(f"{value} has no CEL literal")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(cel_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{cel_literal(str(k))}: {cel_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise Untranslatable(f"{type(value).__name__} value has no CEL literal")


# --------------------------------------------------------------------------- templates


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("=")


def template_parts(value: str) -> list[tuple[bool, str]]:
    """An n8n template (without its leading `=`) as (is_code, text) parts."""
    parts: list[tuple[bool, str]] = []
    at = 0
    while True:
        start = value.find("{{", at)
        if start < 0:
            break
        end = _closing(value, start + 2)
        if end < 0:
            if len(value) - start > MAX_EXPRESSION:
                raise Untranslatable(f"an expression longer than {MAX_EXPRESSION} characters")
            raise Untranslatable("`{{` has no closing `}}`")
        if start > at:
            parts.append((False, value[at:start]))
        parts.append((True, value[start + 2 : end].strip()))
        at = end + 2
    if at < len(value):
        parts.append((False, value[at:]))
    return parts


def _closing(text: str, at: int) -> int:
    quote: str | None = None
    i = at
    stop = min(len(text) - 1, at + MAX_EXPRESSION + 1)  # a longer one is not translated
    while i < stop:
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
        elif text.startswith("}}", i):
            return i
        i += 1
    return -1


def translate_value(value: Any, resolve: Resolve) -> str:
    """A parameter value as one CEL expression: literals as literals, `={{ x }}` as x,
    text mixed with `{{ }}` as a string concatenation."""
    if not is_expression(value):
        return cel_literal(value)
    parts = template_parts(value[1:])
    if len(parts) == 1 and parts[0][0]:
        return translate(parts[0][1], resolve)
    pieces = []
    for is_code, text in parts:
        if is_code:
            code = translate(text, resolve)
            pieces.append(f"string({code})")
        elif text:
            pieces.append(cel_literal(text))
    return _bounded(" + ".join(pieces) if pieces else '""')


def translate_template(value: Any, resolve: Resolve) -> Any:
    """A parameter value as a flowpin template string: `{{ x }}` becomes `${ x' }`, a
    literal `${` is escaped. Non-strings come back unchanged."""
    if not isinstance(value, str):
        return value
    if not is_expression(value):
        return value.replace("${", "$${")
    out: list[str] = []
    for is_code, text in template_parts(value[1:]):
        out.append(f"${{ {translate(text, resolve)} }}" if is_code else text.replace("${", "$${"))
    return "".join(out)


# --------------------------------------------------------------------------- expressions


def _bounded(cel_text: str) -> str:
    if len(cel_text) > MAX_EXPRESSION:
        raise Untranslatable(f"its CEL would be longer than {MAX_EXPRESSION} characters")
    return cel_text


def translate(source: str, resolve: Resolve) -> str:
    """One JavaScript expression (the inside of `{{ }}`) as CEL."""
    if len(source) > MAX_EXPRESSION:
        raise Untranslatable(f"an expression longer than {MAX_EXPRESSION} characters")
    tokens = _tokenize(source)
    parser = _Parser(tokens, resolve)
    fragment = parser.expression()
    if parser.peek() != ("end", ""):
        raise Untranslatable(f"unexpected {parser.peek()[1]!r}")
    problem = cel.issue(fragment.cel)
    if problem is not None:
        raise Untranslatable(f"the CEL would not compile ({problem.message})")
    return fragment.cel


def _tokenize(source: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    at = 0
    text = source.strip()
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise Untranslatable(f"cannot read {text[at : at + 12]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        at = match.end()
        while at < len(text) and text[at].isspace():
            at += 1
    tokens.append(("end", ""))
    return tokens


def _js_string(token: str) -> str:
    body = token[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and re.match(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_JS_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


class _Parser:
    """Recursive descent over the JavaScript subset, producing CEL text."""

    def __init__(self, tokens: list[tuple[str, str]], resolve: Resolve) -> None:
        self.tokens = tokens
        self.at = 0
        self.resolve = resolve
        self.depth = 0

    def _deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise Untranslatable(f"nested more than {MAX_NESTING} levels deep")

    def peek(self, ahead: int = 0) -> tuple[str, str]:
        return self.tokens[min(self.at + ahead, len(self.tokens) - 1)]

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.at += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token[1] != text or token[0] not in ("op", "ident"):
            raise Untranslatable(f"expected {text!r}, found {token[1] or 'the end'!r}")

    def accept(self, *texts: str) -> str | None:
        kind, text = self.peek()
        if kind == "op" and text in texts:
            self.at += 1
            return text
        return None

    def expression(self) -> _Fragment:
        condition = self.logical_or()
        if not self.accept("?"):
            return condition
        if not condition.boolean:
            raise Untranslatable("`?:` on a value that is not a comparison")
        self._deeper()
        then = self.expression()
        self.expect(":")
        otherwise = self.expression()
        self.depth -= 1
        text = f"{condition.at(_OR)} ? {then.at(_OR)} : {otherwise.at(_TERNARY)}"
        return _Fragment(text, _TERNARY, then.boolean and otherwise.boolean)

    def _logical(self, operator: str, level: int, operand: Callable[[], _Fragment]) -> _Fragment:
        left = operand()
        while self.accept(operator):
            right = operand()
            if not (left.boolean and right.boolean):
                raise Untranslatable(
                    f"`{operator}` between values that are not comparisons "
                    "(JavaScript returns an operand, CEL a bool)"
                )
            left = _Fragment(f"{left.at(level)} {operator} {right.at(level + 1)}", level, True)
        return left

    def logical_or(self) -> _Fragment:
        return self._logical("||", _OR, self.logical_and)

    def logical_and(self) -> _Fragment:
        return self._logical("&&", _AND, self.equality)

    def equality(self) -> _Fragment:
        left = self.relational()
        while operator := self.accept("===", "!==", "==", "!="):
            right = self.relational()
            cel_op = "==" if operator in ("===", "==") else "!="
            left = _Fragment(f"{left.at(_EQ)} {cel_op} {right.at(_REL)}", _EQ, True)
        return left

    def relational(self) -> _Fragment:
        left = self.additive()
        while operator := self.accept("<=", ">=", "<", ">"):
            right = self.additive()
            left = _Fragment(f"{left.at(_REL)} {operator} {right.at(_ADD)}", _REL, True)
        return left

    def additive(self) -> _Fragment:
        left = self.multiplicative()
        while operator := self.accept("+", "-"):
            right = self.multiplicative()
            left = _Fragment(f"{left.at(_ADD)} {operator} {right.at(_MUL)}", _ADD)
        return left

    def multiplicative(self) -> _Fragment:
        left = self.unary()
        while operator := self.accept("*", "/", "%"):
            right = self.unary()
            left = _Fragment(f"{left.at(_MUL)} {operator} {right.at(_UNARY)}", _MUL)
        return left

    def unary(self) -> _Fragment:
        if self.accept("!"):
            self._deeper()
            operand = self.unary()
            self.depth -= 1
            if not operand.boolean:
                raise Untranslatable("`!` on a value that is not a comparison (truthiness)")
            return _Fragment(f"!{operand.at(_UNARY)}", _UNARY, True)
        if self.accept("-"):
            self._deeper()
            operand = self.unary()
            self.depth -= 1
            return _Fragment(f"-{operand.at(_UNARY)}", _UNARY)
        return self.postfix()

    def postfix(self) -> _Fragment:
        kind, text = self.peek()
        if kind == "ident" and text.startswith("$"):
            return self.reference()
        fragment = self.primary()
        while True:
            if self.peek() == ("op", ".") and self.peek(1) == ("ident", "length"):
                self.at += 2
                fragment = _Fragment(f"size({fragment.cel})", _ATOM)
            elif self.accept("["):
                index = self.take()
                if index[0] != "num" or not index[1].isdigit():
                    raise Untranslatable("computed index")
                self.expect("]")
                fragment = _Fragment(f"{fragment.at(_ATOM)}[{index[1]}]", _ATOM)
            elif self.peek() in (("op", "."), ("op", "(")):
                raise Untranslatable(f"method or property {self.peek(1)[1]!r} of a value")
            else:
                return fragment

    def primary(self) -> _Fragment:
        kind, text = self.take()
        if kind == "num":
            number = float(text) if any(c in text for c in ".eE") else int(text)
            return _Fragment(cel_literal(number), _ATOM)
        if kind == "str":
            return _Fragment(cel_literal(_js_string(text)), _ATOM)
        if kind == "ident" and text in ("true", "false"):
            return _Fragment(text, _ATOM, True)
        if kind == "ident" and text == "null":
            return _Fragment("null", _ATOM)
        if kind == "op" and text == "(":
            self._deeper()
            inner = self.expression()
            self.depth -= 1
            self.expect(")")
            return _Fragment(inner.cel, inner.level, inner.boolean)
        if kind == "end":
            raise Untranslatable("empty expression")
        raise Untranslatable(f"{text!r} has no CEL counterpart")

    # ----------------------------------------------------------------- references

    def reference(self) -> _Fragment:
        _, name = self.take()
        node: str | None
        if name == "$json":
            node = None
        elif name == "$input":
            self._item()
            node = None
        elif name == "$" and self.accept("("):
            kind, text = self.take()
            if kind != "str":
                raise Untranslatable("$() with a computed node name")
            self.expect(")")
            node = _js_string(text)
            self._item()
        elif name == "$node" and self.accept("["):
            kind, text = self.take()
            if kind != "str":
                raise Untranslatable("$node[] with a computed node name")
            self.expect("]")
            self._dot("json")
            node = _js_string(text)
        else:
            raise Untranslatable(f"{name} has no flowpin counterpart")
        path: list[Segment] = []
        size = False
        while True:
            if self.peek() == ("op", "."):
                kind, text = self.peek(1)
                if kind != "ident":
                    raise Untranslatable(f"unexpected {text!r}")
                if self.peek(2) == ("op", "("):
                    raise Untranslatable(f"method call .{text}()")
                self.at += 2
                if text == "length" and self.peek() not in (("op", "."), ("op", "[")):
                    size = True
                    break
                path.append(text)
            elif self.accept("["):
                kind, text = self.take()
                if kind == "str":
                    path.append(_js_string(text))
                elif kind == "num" and text.isdigit():
                    path.append(int(text))
                else:
                    raise Untranslatable("computed index")
                self.expect("]")
            else:
                break
        if self.peek() == ("op", "("):
            raise Untranslatable("call of a value")
        text = self.resolve(node, path)
        return _Fragment(f"size({text})" if size else text, _ATOM)

    def _dot(self, name: str) -> None:
        self.expect(".")
        self.expect(name)

    def _item(self) -> None:
        """`.item.json` or `.first().json`: the node's (only) item."""
        self.expect(".")
        kind, text = self.take()
        if text == "first" and kind == "ident":
            self.expect("(")
            self.expect(")")
        elif text != "item" or kind != "ident":
            raise Untranslatable(f".{text} (flowpin steps have one output, not items)")
        self._dot("json")
