"""A class server in headless Chromium: the teacher (from the link with the token) and two
students (by their signed cookies) in browser contexts of their own.

Two finished runs are on the server before it starts: Ada's (older) and Bob's (newest, so
the Runs page opens on it), and a job of Ada's that is "running" (its process is the
test's own, so nothing trains). Run: `pytest -m browser tests/test_class_browser.py`.
"""

from __future__ import annotations

import base64
import json
import os
import time

import pytest
from app_helpers import QUICK_CPU_RUN
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_browser import _settled, _shot, browser, start_app  # noqa: F401

from resnet_core.common.classroom import COOKIE, new_token, student_cookie
from resnet_core.training.class_rules import read_limits
from resnet_core.training.fitting import fit
from resnet_core.training.jobs import JobQueue

pytestmark = pytest.mark.browser

TOKEN = new_token()
ADA, ADA_COOKIE = student_cookie("Ada", TOKEN)
BOB, BOB_COOKIE = student_cookie("Bob", TOKEN)
HOSTILE = (
    "[Log in again](http://evil.example/login) ![x](http://evil.example/t.png) www.evil.example"
)
NAME = "[Log in](http://evil.example/a) ![x]"  # 36 of the 40 characters a name may have


def _finished_run(queue: JobQueue, owner) -> str:
    job = queue.submit({**QUICK_CPU_RUN, "subset": 50}, owner=owner)
    fit({**QUICK_CPU_RUN, "subset": 50}, run_dir=queue.run_dir(job))
    queue.update(job.job_id, state="done", finished=time.time())
    return job.run_id


@pytest.fixture(scope="module")
def class_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("class")
    queue = JobQueue(tmp / "checkpoints")
    runs = {"ada": _finished_run(queue, ADA)}
    time.sleep(1.1)  # run ids carry the second they were made: Bob's is the newest
    runs["bob"] = _finished_run(queue, BOB)
    training = queue.submit(QUICK_CPU_RUN, owner=ADA)  # "running" in this live process
    queue.update(training.job_id, state="running", pid=os.getpid(), started=time.time())
    process, port, log = start_app(
        tmp, RESNET_EXPLORER_CLASS="on", RESNET_EXPLORER_TEACHER_TOKEN=TOKEN
    )
    yield {"url": f"http://127.0.0.1:{port}", "runs": runs, "tmp": tmp, "log": tmp / "server.log"}
    process.terminate()
    process.wait(timeout=10)
    log.close()


def _person(browser, server, cookie: str | None = None):  # noqa: F811
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    if cookie is not None:
        context.add_cookies([{"name": COOKIE, "value": cookie, "url": server["url"]}])
    return context, context.new_page()


def _text(page) -> str:
    return page.inner_text("[data-testid=stApp]")


def _open_runs(page, server) -> str:
    page.goto(f"{server['url']}/runs")
    _settled(page)
    return _text(page)


def test_a_student_sees_the_class_runs_but_changes_only_their_own_and_no_server_paths(
    browser,  # noqa: F811
    class_server,
):
    context, page = _person(browser, class_server, ADA_COOKIE)
    text = _open_runs(page, class_server)
    assert "You: Ada (student)" in text
    runs = class_server["runs"]
    picker = page.get_by_role("combobox", name="Run", exact=True)
    assert picker.input_value().endswith(runs["bob"])
    assert "Someone else's run" in text  # Bob's, the newest, is open
    assert page.get_by_text("Delete this run").count() == 0
    assert "Data folder" not in text and str(class_server["tmp"]) not in text
    assert "CIFAR-10: not on this server" in text
    picker.fill(runs["ada"])
    page.get_by_role("option", name=runs["ada"]).click()
    page.get_by_text("Delete this run").wait_for(timeout=60_000)
    _shot(page, "class-student-runs")
    context.close()


def test_the_teacher_link_is_used_once_and_the_teacher_may_change_any_run(
    browser,  # noqa: F811
    class_server,
):
    context, page = _person(browser, class_server)
    page.goto(f"{class_server['url']}/runs?teacher={TOKEN}")
    _settled(page)
    page.wait_for_function("() => !location.search.includes('teacher=')", timeout=30_000)
    text = _text(page)
    assert "You: the teacher" in text and "Class settings" in text
    assert "Delete this run" in text  # Bob's run, not the teacher's
    assert TOKEN not in page.content()
    _shot(page, "class-teacher-runs")
    page.get_by_text("Class settings").click()
    page.get_by_label("Most epochs per run").fill("7")
    page.get_by_role("button", name="Save").click()
    deadline = time.time() + 300  # the event is the saved file; its toast lasts seconds only
    while read_limits(class_server["tmp"] / "checkpoints").max_epochs != 7:
        assert time.time() < deadline, "the class settings were not saved"
        time.sleep(0.5)
    page.goto(f"{class_server['url']}/runs")  # the cookie keeps the teacher a teacher
    _settled(page)
    assert "You: the teacher" in _text(page)
    context.close()


@pytest.mark.parametrize("given", ["", "wrong", TOKEN[:-1], TOKEN[:10]])
def test_without_the_exact_token_nobody_is_the_teacher(browser, class_server, given):  # noqa: F811
    context, page = _person(browser, class_server)
    page.goto(f"{class_server['url']}/runs?teacher={given}")
    page.get_by_label("Your name").wait_for(timeout=60_000)
    assert "the teacher" not in _text(page)
    context.close()


def test_a_forged_cookie_gets_a_fresh_identity_and_a_typed_name_is_shown_as_text(
    browser,  # noqa: F811
    class_server,
):
    payload, signature = ADA_COOKIE.split(".")
    claim = json.dumps({"name": "Bob", "key": BOB.key}).encode()
    forged = base64.urlsafe_b64encode(claim).decode() + "." + signature
    context, page = _person(browser, class_server, forged)
    page.goto(f"{class_server['url']}/runs")
    field = page.get_by_label("Your name")
    field.fill(NAME)
    field.press("Tab")
    page.get_by_role("button", name="Start").click()
    page.get_by_text("Someone else's run").wait_for(timeout=60_000)  # the Runs page, as a student
    _settled(page)
    page.wait_for_function(f"() => document.cookie.includes('{COOKIE}=')", timeout=30_000)
    text = _text(page)
    assert f"You: {NAME} (student)" in text.replace("\u200b", "")  # as typed, as text
    assert "Someone else's run" in text  # not Bob, whose run this is
    assert page.locator("a[href*='evil.example'], img[src*='evil.example']").count() == 0
    page.goto(f"{class_server['url']}/?net={HOSTILE}")  # and a hostile link to a net
    _settled(page)
    assert page.locator("a[href*='evil.example'], img[src*='evil.example']").count() == 0
    _shot(page, "class-hostile-name")
    context.close()


def test_a_student_cancels_only_their_own_job_and_queues_no_more_than_the_limit(
    browser,  # noqa: F811
    class_server,
):
    for cookie, buttons in ((BOB_COOKIE, 0), (ADA_COOKIE, 1)):
        context, page = _person(browser, class_server, cookie)
        page.goto(f"{class_server['url']}/train")
        _settled(page)
        cancel = page.get_by_role("button", name="Cancel this run")
        if not buttons:  # Bob sees Ada's job progress (the fragment redraws it every second)
            page.get_by_text("epoch 1 of 1").first.wait_for(timeout=60_000)
            _settled(page)
            assert cancel.count() == 0 and "epoch 1 of 1" in _text(page)
        else:  # Ada, whose job runs: she may cancel it; a second one is refused, nothing queued
            cancel.wait_for(timeout=60_000)
            page.get_by_text("Start a run").click()  # folded while a job runs
            refused = page.get_by_text("You have 1 job(s) queued or running")
            for _ in range(3):  # a press can be lost while the live fragment redraws: again
                page.get_by_role("button", name="Start training").click()
                try:
                    refused.wait_for(timeout=20_000)
                    break
                except PlaywrightTimeout:
                    continue
            _shot(page, "class-student-limit")  # also when it failed: what the page showed
            assert refused.is_visible()
            assert len(JobQueue(class_server["tmp"] / "checkpoints").jobs()) == 3
        context.close()
