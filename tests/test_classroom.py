"""resnet_core.common.classroom: who is the teacher, who is which student, and which servers
are class servers."""

from __future__ import annotations

import base64
import json

import pytest

from resnet_core.common.classroom import (
    OWNER,
    Person,
    clean_name,
    is_class_server,
    new_token,
    read_student,
    student_cookie,
    token_matches,
)

TOKEN = new_token()


def test_only_the_exact_token_makes_the_teacher():
    assert token_matches(TOKEN, TOKEN)
    for wrong in ("", None, TOKEN[:-1], TOKEN[:8], TOKEN + "x", new_token(), " " + TOKEN):
        assert not token_matches(wrong, TOKEN), wrong
    assert not token_matches("", "") and not token_matches(None, None)
    assert not token_matches("anything", "")  # a server without a token has no teacher
    assert len(TOKEN) >= 40 and new_token() != TOKEN


@pytest.mark.parametrize(
    ("address", "setting", "expected"),
    [("localhost", None, False), ("127.0.0.1", "", False), ("::1", None, False),
     ("0.0.0.0", None, True), ("", None, True), (None, None, True), ("10.0.0.5", None, True),
     ("localhost", "on", True), ("0.0.0.0", "off", False), ("localhost", " ON ", True)],
)  # fmt: skip
def test_a_server_others_can_reach_is_a_class_server_unless_told_otherwise(
    address, setting, expected
):
    assert is_class_server(address, setting) is expected


def test_a_student_cookie_brings_back_the_same_student_and_only_on_this_server():
    ada, cookie = student_cookie("  Ada   Lovelace ", TOKEN)
    assert ada == Person("student", "Ada Lovelace", ada.key) and ada.key.startswith("student:")
    assert read_student(cookie, TOKEN) == ada
    assert read_student(cookie, new_token()) is None  # another server's (or a new token's)
    other, _ = student_cookie("Ada Lovelace", TOKEN)
    assert other.key != ada.key  # the same name typed twice is two students


def test_a_forged_or_altered_cookie_names_nobody():
    ada, cookie = student_cookie("Ada", TOKEN)
    bob, bob_cookie = student_cookie("Bob", TOKEN)
    payload, signature = cookie.split(".")
    claim = json.dumps({"name": "Bob", "key": bob.key}).encode()
    forged = base64.urlsafe_b64encode(claim).decode() + "." + signature
    spliced = payload + "." + bob_cookie.split(".")[1]
    teacher_claim = base64.urlsafe_b64encode(json.dumps({"name": "T", "key": OWNER}).encode())
    for bad in (forged, spliced, cookie + "0", cookie[:-1], "", None, "a.b", "x" * 5000,
                teacher_claim.decode() + "." + signature, ".".join([payload, signature, "x"])):  # fmt: skip
        assert read_student(bad, TOKEN) is None, bad
    assert read_student(cookie, "") is None


def test_a_name_is_kept_printable_short_and_on_one_line():
    assert clean_name("Ada\nLovelace\t\u200b") == "Ada Lovelace"
    assert clean_name("x" * 100) == "x" * 40
    assert clean_name("[Log in](http://evil.example)") == "[Log in](http://evil.example)"
    for empty in ("", "   ", "\n\t", "\u200b\u200e"):
        with pytest.raises(ValueError, match="Type a name"):
            clean_name(empty)


def test_the_teacher_and_a_laptop_owner_change_anything_a_student_only_their_own():
    ada, _ = student_cookie("Ada", TOKEN)
    bob, _ = student_cookie("Bob", TOKEN)
    teacher, owner = Person("teacher", "Teacher", OWNER), Person("owner", "", OWNER)
    for job_owner in (ada.key, bob.key, OWNER, "", None, "student:é"):
        assert teacher.owns(job_owner) and owner.owns(job_owner)
    assert ada.owns(ada.key)
    for job_owner in (bob.key, OWNER, "", None, ada.key[:-1], "student:é"):
        assert not ada.owns(job_owner), job_owner


def test_app_class_starts_a_class_server_and_prints_the_teacher_link_once():
    from resnet_core.cli.app import class_launch

    flags, env, link = class_launch(["--class", "--server.port", "8600"], {"PATH": "/bin"})
    assert flags[:4] == ["--client.showErrorDetails", "none", "--server.address", "0.0.0.0"]
    assert flags[4:] == ["--server.port", "8600"]
    assert env["RESNET_EXPLORER_CLASS"] == "on" and env["PATH"] == "/bin"
    token = env["RESNET_EXPLORER_TEACHER_TOKEN"]
    assert len(token) >= 40 and link.endswith(f":8600/?teacher={token}")
    chosen = {"RESNET_EXPLORER_TEACHER_TOKEN": "a-token-the-teacher-chose-and-kept-secret"}
    flags, env, link = class_launch(["--server.address=10.0.0.5", "--class"], chosen)
    assert "--server.address" not in flags and "--server.address=10.0.0.5" in flags
    assert link == "http://10.0.0.5:8501/?teacher=a-token-the-teacher-chose-and-kept-secret"
    assert is_class_server("10.0.0.5", env["RESNET_EXPLORER_CLASS"])
