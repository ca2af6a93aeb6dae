"""Markdown for docs/protocol.md from the contract's models: field tables from their JSON
schemas (type, required, ``Field`` description), enumeration tables, JSON examples through
:func:`~protocol.codec.encode`. Used by :mod:`protocol.docgen`."""

from __future__ import annotations

import json
import re
from typing import Any, get_args

from pydantic import BaseModel

from protocol import codec, models, topics
from protocol.models import Message

__all__ = ["cell", "enum_table", "field_type", "fields_table", "json_block", "models_tables",
           "models_tables_many", "nested_models", "plain", "table"]

_KNOWN_PATTERNS = {
    models.NAME_PATTERN: "name",
    models.COMMAND_ID_PATTERN: "command id",
    topics.ID_PATTERN: "id",
}


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plain(docstring: str | None) -> str:
    """A docstring's text with reStructuredText markup turned into Markdown."""
    text = (docstring or "").strip()
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([\w]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "\n\n".join(paragraphs)


def json_block(message: Message) -> str:
    pretty = json.dumps(json.loads(codec.encode(message)), indent=2, ensure_ascii=False)
    return f"```json\n{pretty}\n```"


def _number_bounds(schema: dict[str, Any]) -> str:
    bounds = []
    if "minimum" in schema:
        bounds.append(f">= {schema['minimum']}")
    if "exclusiveMinimum" in schema:
        bounds.append(f"> {schema['exclusiveMinimum']}")
    if "maximum" in schema and schema["maximum"] != models.MAX_INT:
        bounds.append(f"<= {schema['maximum']}")
    if "exclusiveMaximum" in schema:
        bounds.append(f"< {schema['exclusiveMaximum']}")
    return ", ".join(bounds)


def field_type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short readable type for one JSON schema node."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        target = defs[name]
        if "enum" in target:
            words = re.sub(r"(?<!^)([A-Z])", r" \1", name).lower()
            return f"string (see {words} table)"
        return f"object ({name}, below)"
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return " or ".join(f"`{value}`" for value in schema["enum"])
    if "anyOf" in schema:
        parts = [p for p in schema["anyOf"] if p.get("type") != "null"]
        nullable = len(parts) != len(schema["anyOf"])
        if len(parts) > 2 and all("$ref" in p for p in parts):
            text = "object (depends on the action, see below)"
        elif {p.get("type") for p in parts} == {"integer", "number"} and len(parts) == 2:
            text = "number"
        else:
            text = " or ".join(field_type(p, defs) for p in parts)
        return f"{text} or null" if nullable else text
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "date-time":
            return "timestamp (UTC)"
        pattern = schema.get("pattern")
        text = _KNOWN_PATTERNS.get(pattern, "string")
        if "maxLength" in schema:
            text += f", at most {schema['maxLength']} characters"
        return text
    if kind in ("integer", "number"):
        bounds = _number_bounds(schema)
        return f"{kind} {bounds}" if bounds else kind
    if kind == "boolean":
        return "true/false"
    if kind == "object":
        if "patternProperties" in schema:
            (pattern, value), = schema["patternProperties"].items()
            key = _KNOWN_PATTERNS.get(pattern, "string")
            return f"object: {key} -> {field_type(value, defs)}"
        return "JSON object"
    if kind == "array":
        return f"array of {field_type(schema.get('items', {}), defs)}"
    return "any"


def fields_table(model: type[BaseModel]) -> str:
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        field = model.model_fields[next(k for k, f in model.model_fields.items()
                                        if (f.alias or k) == name)]
        if name in required or name == "v":  # decode() requires v even though it has a default
            need = "yes"
        else:
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = default.model_dump()
            need = f"no (default `{json.dumps(default, default=str)}`)"
        rows.append([f"`{name}`", field_type(prop, defs), need, field.description or ""])
    return table(["field", "type", "required", "description"], rows)


def nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and every model its fields use, depth first, each once."""
    found: list[type[BaseModel]] = []

    def types_in(annotation: Any):
        yield annotation
        for arg in get_args(annotation):
            yield from types_in(arg)

    def visit(m: type[BaseModel]) -> None:
        if m in found:
            return
        found.append(m)
        for field in m.model_fields.values():
            for t in types_in(field.annotation):
                if isinstance(t, type) and issubclass(t, BaseModel):
                    visit(t)

    visit(model)
    return found


def models_tables(model: type[BaseModel], level: str = "#####") -> str:
    """A fields table for ``model`` and each model nested in it."""
    return "\n\n".join(f"{level} `{m.__name__}`\n\n{plain(m.__doc__)}\n\n{fields_table(m)}"
                        .replace("\n\n\n\n", "\n\n") for m in nested_models(model))


def enum_table(header: str, descriptions: dict[Any, str]) -> str:
    return table([header, "meaning"], [[f"`{k.value}`", v] for k, v in descriptions.items()])


def models_tables_many(many: list[type[BaseModel]]) -> str:
    return "\n\n".join(f"##### `{m.__name__}`\n\n{plain(m.__doc__)}\n\n{fields_table(m)}"
                         for m in many)
