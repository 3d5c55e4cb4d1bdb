"""User text made safe to show in Markdown: a name, a run's label, a net typed in a link.

Streamlit renders most strings as Markdown, where `[a](http://...)` is a link, `![x](url)`
an image the viewer's browser fetches, `:red[...]` colour and `$...$` maths, and GitHub's
autolinks turn a bare `http://...` or `www.` into a link. A backslash before a punctuation
mark shows it as itself: escaping the marks that open a link, an image, HTML, code, maths,
emphasis or a heading leaves nothing Markdown could act on, while the text reads the same on
screen. Autolinks are found after the escapes, so an invisible zero-width space goes inside
every "://", "www." and "@".
"""

from __future__ import annotations

import re

__all__ = ["escape_markdown", "hide_paths", "plain_label"]

_PATH = re.compile(r"(?<![\w.:/])(?:~|\.{1,2})?(?:/[^\s/'\"`,;:()]+)+/?")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9 _+,=/\[\]\-.]")  # brackets without () link nothing
_LONE_DOT = re.compile(r"(?<![0-9])\.|\.(?![0-9])")  # "www.x.y" could become a link; "0.5" not

# GitHub's autolinks see through backslashes: a zero-width space breaks "://", "www." and "@"
_AUTOLINK = re.compile(r"://|(?i:www)\.|@")
# What can start a link, an image, HTML, code, maths, emphasis or a heading, and the escape
# itself; the rest of the punctuation ("(", ".", ":", "_" inside words) is left as typed.
_ESCAPES = str.maketrans({char: "\\" + char for char in "\\`*[]<>#|~$"})


def escape_markdown(text: object, one_line: bool = False) -> str:
    """`text` shown literally in Markdown (`one_line`: line breaks become spaces)."""
    unlinked = _AUTOLINK.sub(
        lambda found: found.group(0)[0] + "\u200b" + found.group(0)[1:], str(text)
    )
    escaped = unlinked.translate(_ESCAPES)
    return " ".join(escaped.split()) if one_line else escaped


def plain_label(text: object, limit: int = 80) -> str:
    """A net's or a run's name read from a file, kept to characters no renderer acts on:
    letters, digits, spaces and `_+,=/-[]`, a dot only inside a number; anything else is `?`
    (names this app writes already are: "resnet56", "custom basic [1, 1] residual").
    Square brackets stay: without a parenthesis after them they make no link or image."""
    kept = _NOT_LABEL.sub("?", " ".join(str(text).split()))
    return _LONE_DOT.sub("?", kept)[:limit]


def hide_paths(text: object) -> str:
    """`text` with every absolute (or ~ or ./) path cut to its last part ("/srv/data/x.pt" ->
    "x.pt"): what a student may read of a message from the server."""

    def last_part(match: re.Match) -> str:
        return match.group(0).rstrip("/").rsplit("/", 1)[-1] or "/"

    return _PATH.sub(last_part, str(text))
