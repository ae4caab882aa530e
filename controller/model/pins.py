"""Editing one pin in an environment file, keeping every comment and the formatting.

`flowpin promote` and `flowpin rollback --git` change `spec.pins.<workflow>` and nothing
else: the scalar's own characters are replaced in place (its position comes from the YAML
parser), or one entry is added in the style of the mapping (flow `{a: 1}` or block).
"""

from __future__ import annotations

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode


class PinEditError(ValueError):
    """The file cannot be edited (not an Environment with spec, or pins of an odd shape)."""


def _child(node: Node, key: str) -> tuple[ScalarNode, Node] | None:
    if not isinstance(node, MappingNode):
        return None
    for key_node, value in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return key_node, value
    return None


def set_pin(text: str, workflow: str, version: str) -> str:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise PinEditError(f"not valid YAML: {error}") from error
    spec = _child(root, "spec") if root is not None else None
    if spec is None:
        raise PinEditError("no spec: in the environment file")
    pins = _child(spec[1], "pins")
    if pins is None:
        indent = " " * (spec[1].start_mark.column if isinstance(spec[1], MappingNode) else 2)
        insert_at = spec[1].end_mark.index
        if getattr(spec[1], "flow_style", False):
            raise PinEditError("spec is a flow mapping without pins; add `pins:` by hand")
        return (
            text[:insert_at].rstrip("\n")
            + f"\n{indent}pins:\n{indent}  {workflow}: {version}\n"
            + text[insert_at:].lstrip("\n")
        )
    mapping = pins[1]
    if not isinstance(mapping, MappingNode):
        raise PinEditError("spec.pins is not a mapping")
    existing = _child(mapping, workflow)
    if existing is not None:
        value = existing[1]
        if not isinstance(value, ScalarNode):
            raise PinEditError(f"spec.pins.{workflow} is not a plain value")
        return text[: value.start_mark.index] + version + text[value.end_mark.index :]
    if mapping.flow_style:
        close = mapping.end_mark.index - 1  # the `}`
        before = text[:close].rstrip()
        separator = ", " if mapping.value else ""
        return before + f"{separator}{workflow}: {version}" + text[close:]
    last_value = mapping.value[-1][1] if mapping.value else None
    column = (
        mapping.value[0][0].start_mark.column if mapping.value else pins[0].start_mark.column + 2
    )
    insert_at = last_value.end_mark.index if last_value is not None else pins[0].end_mark.index
    line_end = text.find("\n", insert_at)
    line_end = len(text) if line_end < 0 else line_end
    return text[:line_end] + f"\n{' ' * column}{workflow}: {version}" + text[line_end:]
