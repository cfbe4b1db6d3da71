"""Strict, located YAML for the policy file: plain data only, every problem as a ``PolicyError``.

The policy is read as a YAML *node tree* (which keeps line numbers) and then interpreted by
:mod:`streams.core.policy`. This module guarantees that the tree it returns holds nothing but plain
data, and that every way YAML can go wrong becomes a :class:`~streams.errors.PolicyError` whose
message starts with ``<file>:<line>:<column>:`` followed by a plain sentence:

- syntax errors (and a stream of more than one document);
- anchors, aliases and merge keys (``&a``, ``*a``, ``<<``): they make a reviewer read one place
  and the gate apply another, so a policy must spell every value out where it applies;
- any tag outside YAML's plain types (``!!python/object``, ``!custom``, ``!!binary``...);
- a file larger than :data:`MAX_POLICY_BYTES`, or nested too deeply to read;
- a scalar YAML cannot turn into a value (an impossible date such as ``2027-02-30``): see
  :func:`scalar_value`.
"""

from __future__ import annotations

from typing import Any

import yaml

from streams.errors import PolicyError

MAX_POLICY_BYTES = 1024 * 1024
"""The largest policy file accepted (1 MiB); a real policy is a few kilobytes."""

_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_CONSTRUCTOR = yaml.SafeLoader("")


def located(source: str, mark: Any, message: str, hint: str | None = None) -> PolicyError:
    """Return a ``PolicyError`` whose message starts with ``source:line:column:`` of ``mark``."""
    where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else "1:1"
    return PolicyError(f"{source}:{where}: {message}", hint=hint)


def check_size(source: str, size: int) -> None:
    """Refuse a policy of ``size`` bytes when it exceeds :data:`MAX_POLICY_BYTES`."""
    if size > MAX_POLICY_BYTES:
        raise PolicyError(
            f"{source}: the policy file is {size} bytes, more than the {MAX_POLICY_BYTES} bytes"
            " (1 MiB) a policy may have",
            hint="is this the right file? a policy is a few kilobytes of YAML",
        )


def compose_plain(text: str, source: str) -> yaml.Node | None:
    """Return the node tree of ``text`` (``None`` if empty), refusing anything but plain data."""
    check_size(source, len(text.encode("utf-8")))
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise located(
                    source,
                    event.start_mark,
                    f"alias *{event.anchor} is not allowed in a policy",
                    hint="write the value out in full where it applies",
                )
            anchor = getattr(event, "anchor", None)
            if anchor is not None:
                raise located(
                    source,
                    event.start_mark,
                    f"anchor &{anchor} is not allowed in a policy",
                    hint="write the value out in full where it applies",
                )
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise located(source, mark, f"not valid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise located(source, None, f"not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise located(source, None, "not valid YAML: nested too deeply to read") from exc
    if root is not None:
        _check_tags(root, source)
    return root


def _check_tags(root: yaml.Node, source: str) -> None:
    """Refuse merge keys and any tag outside YAML's plain types, anywhere in the tree."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.tag == _MERGE_TAG:
            raise located(
                source,
                node.start_mark,
                "merge keys (<<) are not allowed in a policy",
                hint="write every key out in full where it applies",
            )
        if node.tag not in _PLAIN_TAGS:
            raise located(
                source,
                node.start_mark,
                f"YAML tag {node.tag!r} is not allowed in a policy: only plain strings, numbers,"
                " booleans, dates, lists and mappings",
                hint="remove the tag",
            )
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def scalar_value(node: yaml.Node, source: str, path: str) -> Any:
    """Return the Python value of a scalar node as YAML's safe loader types it.

    A scalar YAML recognises but cannot build (``2027-02-30`` looks like a date but is none)
    raises a located ``PolicyError`` naming ``path``. Non-scalars are returned as ``None`` so the
    caller reports the type it expected.
    """
    if not isinstance(node, yaml.ScalarNode):
        return None
    try:
        return _CONSTRUCTOR.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise located(
            source,
            node.start_mark,
            f"{path}: {node.value!r} cannot be read as a {node.tag.rsplit(':', 1)[-1]}: {exc}",
        ) from exc
