"""Free text on the command line, as typed: `attnlab-fill-mask text="the [MASK] is good"`.

The shell removes the quotes, so Hydra would read `text=the [MASK] is good`, where `[` opens a
list (`mismatched input '[' expecting <EOF>`). The commands that take text quote its value for
Hydra before Hydra parses the command line; a value already quoted for Hydra is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def hydra_quoted(text: str) -> str:
    """`text` as a Hydra quoted value that reads back as `text`. Two characters are special
    after backslashes: the quote (Hydra's escape) and the `$` of `${` (OmegaConf's
    interpolation). Before them, and before the closing quote, backslashes are doubled and
    one more escapes the character."""
    quote = "'" if "'" not in text or '"' in text else '"'
    escaped, out = 0, []
    for i, char in enumerate(text):
        if char == "\\":
            escaped += 1
            continue
        if char == quote or text.startswith("${", i):
            out.append("\\" * (2 * escaped + 1) + char)
        else:
            out.append("\\" * escaped + char)
        escaped = 0
    out.append("\\" * (2 * escaped))  # before the closing quote
    return quote + "".join(out) + quote


def _is_quoted(value: str) -> bool:
    return len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""


def quote_text_values(keys: Sequence[str], lists: bool = False) -> Callable[[list[str]], list[str]]:
    """A command-line rewrite that quotes `key=value` for each key in `keys`. With `lists`, a
    value written as a Hydra list (`text='[Ein Hund., Eine Katze.]'`) stays a list."""

    def rewrite(args: list[str]) -> list[str]:
        out = []
        for arg in args:
            key, sep, value = arg.partition("=")
            keep = _is_quoted(value) or (lists and value.startswith("[") and value.endswith("]"))
            if sep and key in keys and value and not keep:
                arg = f"{key}={hydra_quoted(value)}"
            out.append(arg)
        return out

    return rewrite
