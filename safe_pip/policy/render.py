"""Policy -> TOML text, for ``safe-run --explain``.

The output is the effective policy in the ``[tool.safe-run]`` shape, so a user can
paste it into a pyproject.toml to pin exactly what ran (everything is merged and
expanded, so it has no ``extends``).  What is not a policy key (sources, protected
paths, the state of each sandbox layer) goes into comments.

A dozen lines of emitter beat a TOML-writing dependency: the output only needs strings,
arrays of strings and one table of strings, and ``safe-run`` must stay stdlib-only.
"""

from __future__ import annotations

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from safe_pip.policy.model import Policy

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
_BARE_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def render_toml(policy: Policy, *, layers: Sequence[tuple[str, str]] = ()) -> str:
    """The effective policy as TOML; ``layers`` are (name, status) rows for a comment."""
    fs = policy.filesystem
    lines = [
        "# Effective safe-run policy: every layer merged, every path expanded.",
        "# Valid TOML in the [tool.safe-run] shape (paste it into a pyproject.toml to pin it).",
        "#",
        "# sources, merged in this order:",
    ]
    lines += [f"#   {_comment(source)}" for source in policy.sources]
    lines.append(f"# project directory: {_comment(policy.project_dir)}")
    if fs.protected:
        lines.append("# protected (read-only even under a writable parent; added automatically):")
        lines += [f"#   {_comment(path)}" for path in fs.protected]
    if layers:
        lines.append("# layers:")
        lines += [f"#   {_comment(name)}: {_comment(status)}" for name, status in layers]

    lines += ["", "[tool.safe-run]"]
    if policy.network.mode == "none" or not policy.network.allow:
        lines.append('network = "none"')

    lines += ["", "[tool.safe-run.filesystem]"]
    lines += _array("read", fs.read)
    lines += _array("write", fs.write)
    lines += _array("deny", fs.deny)

    if policy.network.mode != "none" and policy.network.allow:
        lines += ["", "[tool.safe-run.network]"]
        lines += _array("allow", policy.network.allow)

    lines += ["", "[tool.safe-run.env]"]
    lines += _array("pass", policy.env.pass_names)
    # A sub-table rather than an inline table: inline tables must fit on one line and
    # cannot hold the comment an unwritable value needs.
    lines += ["", "[tool.safe-run.env.set]"]
    for name, value in policy.env.set_values:
        key, text = _key(name), _string(value)
        if key is None or text is None:
            lines.append(f"# {_comment(name)} = {_comment(value)}  (not valid UTF-8; omitted)")
        else:
            lines.append(f"{key} = {text}")
    for spec in policy.credentials:
        lines += ["", f"[tool.safe-run.credentials.{_key(spec.name)}]"]
        fields: list[tuple[str, str | None]] = [
            ("env", spec.env),
            ("source", spec.source),
            ("key", spec.key or None),
            ("file", spec.file),
            ("mode", spec.mode),
            ("base-url", spec.base_url),
            ("base-url-env", spec.base_url_env),
        ]
        for field_name, field_value in fields:
            rendered = None if field_value is None else _string(field_value)
            if rendered is not None:
                lines.append(f"{field_name} = {rendered}")
        if spec.plain_http:
            lines.append("plain-http = true")
        lines += _array("hosts", spec.hosts)
    return "\n".join(lines) + "\n"


def _array(name: str, items: Iterable[str]) -> list[str]:
    """A multi-line array, one item a line (diffs and copy/paste stay readable)."""
    body: list[str] = []
    for item in items:
        text = _string(item)
        if text is None:
            body.append(f"    # {_comment(item)}  (not valid UTF-8; cannot be written in TOML)")
        else:
            body.append(f"    {text},")
    if not body:
        return [f"{name} = []"]
    return [f"{name} = [", *body, "]"]


def _string(text: str) -> str | None:
    """``text`` as a TOML basic string, or None if TOML cannot hold it.

    Python strings decoded from non-UTF-8 file names carry lone surrogates
    (``surrogateescape``); TOML strings are Unicode scalar values, so those paths have
    no TOML spelling at all.
    """
    out = ['"']
    for char in text:
        escape = _ESCAPES.get(char)
        if escape is not None:
            out.append(escape)
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04X}")
        elif "\ud800" <= char <= "\udfff":
            return None
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _key(name: str) -> str | None:
    """A TOML key: bare when it can be, quoted otherwise."""
    if name and all(char in _BARE_KEY_CHARS for char in name):
        return name
    return _string(name)


def _comment(text: str) -> str:
    """Text that is safe inside a ``#`` comment: one line, no control characters.

    A newline in a path would otherwise end the comment and inject TOML.
    """
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
