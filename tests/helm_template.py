"""A renderer for the subset of Go templates (and Helm/sprig functions) that deploy/helm uses, so
tests render the chart without helm. Semantics follow text/template: `{{-`/`-}}` trim whitespace,
`if`/`else if`/`else`/`range`/`with`/`define`/`end`, variables (`$x := ...`, `$` is the root),
pipelines (`a | f b` calls `f b a`), Go truthiness, missing map keys render as nothing (Helm's
behaviour). An action outside the subset raises, so a chart change that needs more fails loudly.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)|(?P<decl>:=)"""
    r"""|(?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)|(?P<field>\.(?:[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)?)"""
    r"""|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[()|,=]))"""
)


class TemplateError(Exception):
    pass


# --- parse ------------------------------------------------------------------------------------


@dataclass
class Node:
    kind: str  # text | action | if | range | with | define
    text: str = ""
    expr: list[tuple[str, str]] = field(default_factory=list)
    body: list[Node] = field(default_factory=list)
    orelse: list[Node] = field(default_factory=list)


def tokenize(src: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(src):
        if src[pos:].strip() == "":
            break
        m = TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot parse {src[pos:]!r} in {{{{ {src} }}}}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def parse(src: str) -> list[Node]:
    pieces: list[tuple[str, str]] = []
    pos = 0
    for m in ACTION.finditer(src):
        text = src[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        pieces.append(("text", text))
        pieces.append(("action", m.group(2).strip()))
        pos = m.end()
        if m.group(3):
            rest = src[pos:]
            pos += len(rest) - len(rest.lstrip())
    pieces.append(("text", src[pos:]))
    root: list[Node] = []
    stack: list[tuple[Node, list[Node]]] = []
    current = root
    for kind, text in pieces:
        if kind == "text":
            if text:
                current.append(Node("text", text))
            continue
        if text.startswith("/*"):
            continue
        word, _, rest = text.partition(" ")
        if word in ("if", "range", "with", "define"):
            node = Node(word, expr=tokenize(rest))
            current.append(node)
            stack.append((node, current))
            current = node.body
        elif word == "else":
            node, _parent = stack[-1]
            if rest.startswith("if "):  # else if: a nested if in the else branch, closed by the same end
                inner = Node("if", expr=tokenize(rest[3:]))
                inner.text = "elseif"
                node.orelse.append(inner)
                stack.append((inner, node.orelse))
                current = inner.body
            else:
                current = node.orelse
        elif word == "end":
            node, current = stack.pop()
            while node.text == "elseif":
                node, current = stack.pop()
        elif word == "template":
            current.append(Node("action", expr=[("ident", "include"), *tokenize(rest)]))
        else:
            current.append(Node("action", expr=tokenize(text)))
    if stack:
        raise TemplateError("unclosed block")
    return root


# --- evaluate ---------------------------------------------------------------------------------


def truthy(v: Any) -> bool:
    return v not in (None, False, 0, "") and not (isinstance(v, (list, dict)) and not v)


def to_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        raise TemplateError(f"printing a {type(v).__name__} needs toYaml: {v!r}")
    return str(v)


def to_yaml(v: Any) -> str:
    if v is None:
        return "null"
    return str(yaml.safe_dump(v, sort_keys=True, default_flow_style=False)).rstrip("\n")


def lookup(value: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        if isinstance(value, dict):
            value = value.get(part)
        elif value is None:
            return None
        else:
            value = getattr(value, part, None)
    return value


def _required(msg: str, v: Any) -> Any:
    if v is None or v == "":
        raise TemplateError(f"required: {msg}")
    return v


def _default(d: Any, v: Any = None) -> Any:
    return v if truthy(v) else d


def _printf(fmt: str, *args: Any) -> str:
    return fmt.replace("%v", "%s").replace("%d", "%s") % tuple(to_text(a) for a in args)


def _indent(n: int, s: str) -> str:
    return "\n".join((" " * n + line) if line else line for line in to_text(s).split("\n"))


class Chart:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = yaml.safe_load((root / "Chart.yaml").read_text())
        self.defaults = yaml.safe_load((root / "values.yaml").read_text())
        self.defines: dict[str, list[Node]] = {}
        self.files: dict[str, list[Node]] = {}
        for path in sorted((root / "templates").iterdir()):
            tree = parse(path.read_text())
            self._collect_defines(tree)
            if not path.name.startswith("_") and path.suffix in (".yaml", ".yml", ".tpl", ".txt"):
                self.files[path.name] = tree
        self.funcs: dict[str, Callable[..., Any]] = {
            "include": self._include, "quote": lambda v: '"' + to_text(v).replace('"', '\\"') + '"',
            "squote": lambda v: "'" + to_text(v) + "'", "default": _default, "required": _required,
            "toYaml": to_yaml, "nindent": lambda n, s: "\n" + _indent(n, s), "indent": _indent,
            "b64enc": lambda s: base64.b64encode(to_text(s).encode()).decode(),
            "sha256sum": lambda s: hashlib.sha256(to_text(s).encode()).hexdigest(),
            "printf": _printf, "int": lambda v: int(float(v or 0)), "toString": to_text,
            "eq": lambda a, *b: any(a == x for x in b), "ne": lambda a, b: a != b, "not": lambda v: not truthy(v),
            "and": lambda *a: next((x for x in a if not truthy(x)), a[-1]),
            "or": lambda *a: next((x for x in a if truthy(x)), a[-1]), "empty": lambda v: not truthy(v),
            "trunc": lambda n, s: to_text(s)[:n], "trimSuffix": lambda suf, s: to_text(s).removesuffix(suf),
            "lower": lambda s: to_text(s).lower(), "replace": lambda a, b, s: to_text(s).replace(a, b),
            "until": lambda n: list(range(n)), "add": lambda *a: sum(int(x) for x in a),
            "sub": lambda a, b: int(a) - int(b), "list": lambda *a: list(a), "contains": lambda sub, s: sub in s,
        }

    def _collect_defines(self, tree: list[Node]) -> None:
        for node in tree:
            if node.kind == "define":
                (_kind, name), = node.expr
                self.defines[yaml.safe_load(name)] = node.body

    def render(self, values: dict[str, Any] | None = None, *, release: str = "shieldes",
               namespace: str = "default") -> dict[str, str]:
        """Render every template with values.yaml merged with `values` (like `helm template -f`)."""
        merged = _merge(self.defaults, values or {})
        data = {
            "Values": merged,
            "Release": {"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": True,
                        "IsUpgrade": False},
            "Chart": {"Name": self.meta["name"], "Version": self.meta["version"],
                      "AppVersion": self.meta.get("appVersion", "")},
        }
        return {name: self._run(tree, data, {"$": data}) for name, tree in self.files.items()}

    def manifests(self, values: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for name, text in sorted(self.render(values, **kw).items()):
            if name.endswith((".yaml", ".yml")):
                docs += [d for d in yaml.safe_load_all(text) if d]
        return docs

    def _include(self, name: str, data: Any) -> str:
        if name not in self.defines:
            raise TemplateError(f"no template {name!r}")
        return self._run(self.defines[name], data, {"$": data})

    def _run(self, tree: list[Node], dot: Any, vars: dict[str, Any]) -> str:
        out: list[str] = []
        for node in tree:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                value = self._pipeline(node.expr, dot, vars)
                if not _is_decl(node.expr):
                    out.append(to_text(value))
            elif node.kind == "if":
                scope = dict(vars)
                branch = node.body if truthy(self._pipeline(node.expr, dot, scope)) else node.orelse
                out.append(self._run(branch, dot, scope))
            elif node.kind == "with":
                scope = dict(vars)
                value = self._pipeline(node.expr, dot, scope)
                out.append(self._run(node.body, value, scope) if truthy(value) else self._run(node.orelse, dot, scope))
            elif node.kind == "range":
                names, expr = _split_decl(node.expr)
                items = self._pipeline(expr, dot, vars)
                pairs = sorted(items.items()) if isinstance(items, dict) else list(enumerate(items or []))
                if not pairs:
                    out.append(self._run(node.orelse, dot, dict(vars)))
                for k, v in pairs:
                    scope = dict(vars)
                    if len(names) == 2:
                        scope[names[0]], scope[names[1]] = k, v
                    elif names:
                        scope[names[0]] = v
                    out.append(self._run(node.body, v, scope))
        return "".join(out)

    def _pipeline(self, tokens: list[tuple[str, str]], dot: Any, vars: dict[str, Any]) -> Any:
        names, tokens = _split_decl(tokens)
        commands: list[list[tuple[str, str]]] = [[]]
        depth = 0
        for tok in tokens:
            if tok == ("punct", "(") or tok == ("punct", ")"):
                depth += 1 if tok[1] == "(" else -1
            if tok == ("punct", "|") and depth == 0:
                commands.append([])
            else:
                commands[-1].append(tok)
        value: Any = None
        for i, cmd in enumerate(commands):
            value = self._command(cmd, dot, vars, piped=(value,) if i else ())
        if names:
            vars[names[0]] = value
        return value

    def _command(self, toks: list[tuple[str, str]], dot: Any, vars: dict[str, Any], piped: tuple[Any, ...]) -> Any:
        operands: list[Any] = []
        func: str | None = None
        i = 0
        while i < len(toks):
            kind, text = toks[i]
            if kind == "punct" and text == "(":
                depth, j = 1, i + 1
                while depth:
                    depth += {"(": 1, ")": -1}.get(toks[j][1], 0) if toks[j][0] == "punct" else 0
                    j += 1
                operands.append(self._pipeline(toks[i + 1:j - 1], dot, vars))
                i = j
                continue
            if kind == "ident" and i == 0 and text not in ("true", "false", "nil"):
                if text not in self.funcs:
                    raise TemplateError(f"function {text!r} is outside the supported subset")
                func = text
            else:
                operands.append(self._operand(kind, text, dot, vars))
            i += 1
        if func is None:
            if len(operands) != 1 or piped:
                raise TemplateError(f"cannot evaluate {toks!r}")
            return operands[0]
        return self.funcs[func](*operands, *piped)

    def _operand(self, kind: str, text: str, dot: Any, vars: dict[str, Any]) -> Any:
        if kind == "str":
            return str(yaml.safe_load(text))
        if kind == "raw":
            return text[1:-1]
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "field":
            return lookup(dot, text)
        if kind == "var":
            name, _, path = text.partition(".")
            if name not in vars:
                raise TemplateError(f"undefined variable {name}")
            return lookup(vars[name], path)
        if kind == "ident":
            return {"true": True, "false": False, "nil": None}[text]
        raise TemplateError(f"unexpected {text!r}")


def _split_decl(tokens: list[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str]]]:
    if ("decl", ":=") not in tokens:
        return [], tokens
    at = tokens.index(("decl", ":="))
    return [t for k, t in tokens[:at] if k == "var"], tokens[at + 1:]


def _is_decl(tokens: list[tuple[str, str]]) -> bool:
    return ("decl", ":=") in tokens


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return over
