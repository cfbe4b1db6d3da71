"""Checks the SDK runs on an event before producing it, beyond what the Avro schema checks.

:func:`validate_event` refuses unknown or ``UNKNOWN`` enum symbols and empty strings, naming the
field; the list helpers refuse a bare string where a list is expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streams.errors import InvalidEventError
from streams.serde.catalog import RecordSchema

__all__ = ["id_list", "symbol_list", "validate_event"]


def symbol_list(values: Iterable[str], field: str) -> list[str]:
    """Return a list of enum symbols, refusing a bare string (which would iterate per letter)."""
    if isinstance(values, str):
        raise InvalidEventError(f"{field} must be a list of symbols, got the string {values!r}")
    return list(values)


def id_list(values: Iterable[str], field: str) -> list[str]:
    """Return a list of non-empty ids, refusing a bare string (which would iterate per letter)."""
    if isinstance(values, str):
        raise InvalidEventError(f"{field} must be a list of ids, got the string {values!r}")
    out = list(values)
    if not all(isinstance(v, str) and v.strip() for v in out):
        raise InvalidEventError(f"{field} must hold non-empty string ids, got {out!r}")
    return out


def validate_event(schema: RecordSchema, record: Mapping[str, Any]) -> None:
    """Check an input event against the contract beyond what Avro checks.

    Enum fields (and arrays of enums) must hold a known symbol other than ``UNKNOWN``; string
    fields must be non-empty (nullable ones may be ``None``).

    Raises:
        InvalidEventError: naming the field and, for enums, the allowed values.
    """
    for field in schema.raw["fields"]:
        name = field["name"]
        value = record.get(name)
        symbols = schema.enums.get(name)
        if symbols is not None:
            allowed = [symbol for symbol in symbols if symbol != "UNKNOWN"]
            values = value if isinstance(value, list) else [value]
            bad = [v for v in values if v not in allowed and not (v is None and _nullable(field))]
            if bad:
                raise InvalidEventError(
                    f"{schema.name}.{name} has {bad[0]!r}; allowed: {', '.join(allowed)}"
                )
        elif (
            _is_string(field["type"])
            and not (value is None and _nullable(field))
            and (not isinstance(value, str) or not value.strip())
        ):
            raise InvalidEventError(f"{schema.name}.{name} must be a non-empty string")


def _nullable(field: Mapping[str, Any]) -> bool:
    """Return whether a field's type is a union with ``null``."""
    return isinstance(field["type"], list) and "null" in field["type"]


def _is_string(avro_type: Any) -> bool:
    """Return whether a type is ``string`` or a nullable ``string``."""
    if isinstance(avro_type, list):
        return [t for t in avro_type if t != "null"] == ["string"]
    return bool(avro_type == "string")
