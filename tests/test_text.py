"""resnet_core.common.text: user text shown in Markdown stays text; a student's messages lose
the server's paths; names read from files keep only harmless characters."""

from __future__ import annotations

import re

from resnet_core.common.text import escape_markdown, hide_paths, plain_label


def test_escaped_text_has_no_markdown_left_and_no_unbroken_autolink():
    hostile = (
        "[Log in](http://evil.example) ![x](https://e.example/t.png) :red[x] $x$ www.e.ex a@b.c"
    )
    escaped = escape_markdown(hostile)
    assert not re.search(r"(?<!\\)[\[\]$*`<>#|~]", escaped)  # every mark that opens one
    for autolink in ("://", "www.", "@b"):
        assert autolink not in escaped.replace("\\", "")  # a zero-width space sits inside
    assert escaped.replace("\\", "").replace("\u200b", "") == hostile  # reads the same
    assert escape_markdown("a\n# b", one_line=True) == "a \\# b"


def test_a_student_reads_no_server_path():
    assert hide_paths("/srv/data/cifar: no such folder") == "cifar: no such folder"
    assert hide_paths("run id 'x' points outside /tmp/ck/runs/") == "run id 'x' points outside runs"
    assert hide_paths("~/w/best.pt and ./a/b.pt, 3/4 done") == "best.pt and b.pt, 3/4 done"
    assert hide_paths("resnet20/plain20 at http://x.org/a") == "resnet20/plain20 at http://x.org/a"


def test_a_name_from_a_file_keeps_only_harmless_characters():
    for name in ("plain20-nonorm, width 0.5", "custom basic [1, 1] residual zero-init"):
        assert plain_label(name) == name
    assert plain_label("[x](http://e.example)") == "[x]?http?//e?example?"
    assert plain_label("![i](u)") == "?[i]?u?"
    assert plain_label("www.e.example\n# big") == "www?e?example ? big"
    assert len(plain_label("x" * 500)) == 80
