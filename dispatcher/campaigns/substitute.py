"""Plain substitution: a template that is only literal text, ``{{ name }}`` and
``{{ name|urlencode }}`` rendered without Jinja's per-render machinery, to the same string.

Pure: no I/O. The campaign sender renders the unsubscribe URL once per recipient of an
SES-template campaign (SES renders the rest): with its checks and headers that took 12 us with
Jinja (a new context, the generated render function, the sandbox's filter call), 5 us so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from jinja2 import Environment, nodes

__all__ = ["Piece", "substitute", "substitution"]

# One piece of a URL template that is plain substitution: literal text, or a variable's value
# (str() of it, as Jinja prints it) passed through a filter function or not.
Piece = tuple[str, str | None, Callable[[object], str] | None]


def substitution(
    env: Environment, tree: nodes.Template, reserved: frozenset[str]
) -> list[Piece] | None:
    """The template as literal text and ``{{ name }}`` / ``{{ name|urlencode }}`` pieces, or
    None when it is anything more (then Jinja renders it).

    Such a template's output is the literal text and each value's ``str()`` (or Jinja's own
    urlencode filter of it) joined: the same string Jinja makes.
    """
    if not tree.body:
        return []
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    pieces: list[Piece] = []
    for node in tree.body[0].nodes:
        convert: Callable[[object], str] | None = None
        if isinstance(node, nodes.Filter) and node.name == "urlencode":
            if node.args or node.kwargs or node.dyn_args or node.dyn_kwargs:
                return None
            convert = env.filters["urlencode"]
            if node.node is None:
                return None
            node = node.node
        if isinstance(node, nodes.TemplateData) and convert is None:
            pieces.append((node.data, None, None))
        elif isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in reserved:
            pieces.append(("", node.name, convert))
        else:
            return None
    return pieces


def substitute(pieces: list[Piece], context: Mapping[str, object]) -> str | None:
    """The substituted text; None when a name is not in `context` (Jinja says why)."""
    out = []
    for text, name, convert in pieces:
        if name is None:
            out.append(text)
            continue
        if name not in context:
            return None
        value = context[name]
        out.append(str(value) if convert is None else convert(value))
    return "".join(out)
