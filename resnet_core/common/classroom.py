"""Who is at the other end of a browser: on a laptop, its owner; on a class server, the
teacher (who holds the token) or a student (a name typed once, kept by a signed cookie).

A laptop app listens on this machine only and everyone is the owner, as before. A class
server is one started with `CLASS_ENV`=on (`resnet-explorer app --class`) or one that listens
beyond this machine. Its teacher proves the role with a random token, as Jupyter does: the
server prints a link holding it once, at start. Students need no account: a student's name
and a random id are signed with a key derived from the token (HMAC-SHA256), so a student
cannot make a cookie that names someone else, and a forged or altered one is simply not
believed: its holder gets a fresh identity. A cookie copied whole from another browser is
that browser's identity; what this protects, and what it does not, is in the README ("Run it
for a class").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import unicodedata
from dataclasses import dataclass

from resnet_core.common.files import parse_json

__all__ = [
    "CLASS_ENV",
    "COOKIE",
    "LOCAL_ADDRESSES",
    "OWNER",
    "TEACHER_COOKIE",
    "TOKEN_ENV",
    "Person",
    "clean_name",
    "is_class_server",
    "new_token",
    "read_student",
    "student_cookie",
    "teacher_cookie",
    "token_matches",
]

CLASS_ENV = "RESNET_EXPLORER_CLASS"
TOKEN_ENV = "RESNET_EXPLORER_TEACHER_TOKEN"
COOKIE = "resnet_explorer_student"
TEACHER_COOKIE = "resnet_explorer_teacher"
LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")
OWNER = "owner"  # the key of a laptop's owner and of a class server's teacher
MAX_NAME = 40
_STUDENT_PREFIX = "student:"


@dataclass(frozen=True)
class Person:
    """One browser's user. `key` is what jobs record as their owner."""

    role: str  # "owner" (a laptop), "teacher" or "student"
    name: str
    key: str

    @property
    def in_charge(self) -> bool:
        """May cancel or delete any run, set server paths and limits."""
        return self.role in ("owner", "teacher")

    def owns(self, owner_key: str | None) -> bool:
        """Whether a job or run recorded with `owner_key` is this person's to change."""
        if self.in_charge:
            return True
        given = str(owner_key or "").encode("utf-8")
        return bool(given) and hmac.compare_digest(given, self.key.encode("utf-8"))


def is_class_server(listens_on: str | None, setting: str | None) -> bool:
    """A class server: `setting` (CLASS_ENV's value) is on, or the server listens beyond this
    machine (`listens_on` None or "" means every interface). `off` forces a laptop."""
    setting = (setting or "").strip().lower()
    if setting in ("on", "off"):
        return setting == "on"
    return listens_on not in LOCAL_ADDRESSES


def new_token() -> str:
    """A teacher token: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


def token_matches(given: str | None, token: str | None) -> bool:
    """Constant-time comparison; an empty or missing token never matches."""
    if not given or not token:
        return False
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def clean_name(text: str) -> str:
    """A student's name as typed, made safe to keep: printable, one line, at most 40
    characters; ValueError (a sentence for the page) when nothing is left."""
    spaced = " ".join(str(text).split())  # tabs and line breaks become spaces
    kept = "".join(c for c in spaced if unicodedata.category(c)[0] not in "CZ" or c == " ")
    name = " ".join(kept.split())[:MAX_NAME].strip()
    if not name:
        raise ValueError("Type a name (letters or digits) so your runs can be told apart.")
    return name


def _key(token: str) -> bytes:
    return hashlib.sha256(b"resnet-explorer student cookie\0" + token.encode("utf-8")).digest()


def teacher_cookie(token: str | None) -> str:
    """The cookie value that keeps the teacher's browser the teacher's ("" without a token)."""
    if not token:
        return ""
    return hmac.new(_key(token), b"teacher", hashlib.sha256).hexdigest()


def student_cookie(name: str, token: str) -> tuple[Person, str]:
    """A new student named `name` (cleaned) with a fresh random id, and the cookie value that
    keeps them: base64(JSON) "." hex HMAC."""
    person = Person("student", clean_name(name), _STUDENT_PREFIX + secrets.token_hex(12))
    body = json.dumps({"name": person.name, "key": person.key}, separators=(",", ":"))
    payload = base64.urlsafe_b64encode(body.encode("utf-8")).decode("ascii")
    signature = hmac.new(_key(token), payload.encode("ascii"), hashlib.sha256).hexdigest()
    return person, f"{payload}.{signature}"


def read_student(cookie: str | None, token: str | None) -> Person | None:
    """The student a cookie names, or None when it is missing, altered or not signed with
    this server's token."""
    if not cookie or not token or cookie.count(".") != 1 or len(cookie) > 1000:
        return None
    payload, signature = cookie.split(".")
    expected = hmac.new(_key(token), payload.encode("ascii", "replace"), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), signature):
        return None
    try:
        data = parse_json(base64.urlsafe_b64decode(payload.encode("ascii")))
        name, key = clean_name(data["name"]), str(data["key"])
    except (ValueError, KeyError, TypeError, UnicodeError):
        return None
    if not key.startswith(_STUDENT_PREFIX):
        return None
    return Person("student", name, key)
