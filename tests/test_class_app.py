"""On a class server the pages' own helpers refuse a student's forged request: deleting or
cancelling someone else's run is checked on the server, not only hidden from the page."""

from __future__ import annotations

import os
import re
import time

import pytest
from app_helpers import QUICK_CPU_RUN
from streamlit.testing.v1 import AppTest

from resnet_core.common.classroom import new_token, student_cookie
from resnet_core.training.fitting import fit
from resnet_core.training.jobs import JobQueue

TOKEN = new_token()


def _forge(run_id: str, job_id: str) -> None:
    """What a forged click would ask of the server: delete a run, cancel a job."""
    import streamlit as st

    from pages import _ui

    try:
        _ui.delete_run(run_id)
        st.write("deleted")
    except PermissionError as error:
        st.write(f"refused: {error}")
    _ui.cancel_job(job_id)


ADA, BOB = student_cookie("Ada", TOKEN)[0], student_cookie("Bob", TOKEN)[0]


@pytest.fixture
def bobs_run(tmp_path, monkeypatch):
    """A class server's checkpoints holding one finished run of Bob's: (queue, its job)."""
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("RESNET_EXPLORER_CLASS", "on")
    monkeypatch.setenv("RESNET_EXPLORER_TEACHER_TOKEN", TOKEN)
    queue = JobQueue(tmp_path, worker=["true"])
    done = queue.submit(QUICK_CPU_RUN, owner=BOB)
    fit(QUICK_CPU_RUN, run_dir=queue.run_dir(done))
    queue.update(done.job_id, state="done", finished=time.time())
    return queue, done


def test_a_student_cannot_delete_or_cancel_a_classmates_run_even_by_asking_directly(bobs_run):
    import streamlit as st

    queue, done = bobs_run
    ada, bob = ADA, BOB
    waiting = queue.submit(QUICK_CPU_RUN, owner=bob)
    queue.update(waiting.job_id, state="running", pid=os.getpid())  # a live "worker": this
    st.cache_resource.clear()
    for person, deleted in ((ada, False), (bob, True)):
        at = AppTest.from_function(_forge, args=(done.run_id, waiting.job_id), default_timeout=60)
        at.session_state["_person"] = person
        at.run()
        said = [m.value for m in at.markdown] + [e.value for e in at.error]
        assert (queue.run_dir(done).exists()) is not deleted, said
        assert queue.cancel_requested(waiting.job_id) is deleted
        if not deleted:
            assert any("refused: This run is someone else's" in text for text in said), said
            assert any("someone else's" in e.value for e in at.error), said


HOSTILE = "[Free grades](http://evil.example) ![t](http://evil.example/t.png) www.evil.example"


def _markdown_of(at: AppTest) -> list[str]:
    kinds = (at.markdown, at.caption, at.error, at.warning, at.info, at.success)
    return [element.value for kind in kinds for element in kind]


def test_hostile_text_written_into_a_run_folder_is_shown_as_text_on_every_page_that_lists_runs(
    tmp_path, monkeypatch
):
    """What a student's code could write beside its run (its error message, the net's name)
    reaches every browser as text: no Markdown link, image or autolink survives."""
    import json

    from app_helpers import app_test, tiny_run

    checkpoints = tmp_path / "checkpoints"
    run_dir = tiny_run(checkpoints, "plain20")
    status = json.loads((run_dir / "status.json").read_text())
    status |= {"model": HOSTILE, "message": HOSTILE, "state": HOSTILE}
    (run_dir / "status.json").write_text(json.dumps(status))
    queue = JobQueue(checkpoints, worker=["true"])  # and a failed job, for the Train page
    job = queue.submit(QUICK_CPU_RUN, label=HOSTILE)
    queue.update(job.job_id, state="failed", message=HOSTILE, finished=time.time())
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(checkpoints))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    for page in ("pages/runs.py", "pages/train.py", "pages/lesion.py", "pages/landscape.py"):
        at.switch_page(page).run()
        cells = [str(v) for table in at.dataframe for v in table.value.to_numpy().ravel()]
        options = [o for box in at.selectbox for o in box.options]
        shown = _markdown_of(at)  # tables and options are text; Markdown must be escaped
        assert any("Free grades" in t for t in shown + cells + options), (page, shown)
        for text in (t for t in shown if "evil" in t):  # the app's own links may stay
            assert not re.search(r"(?<!\\)\]\(", text), (page, text)  # no [..](..) link or image
            assert "://" not in text and "www.evil" not in text, (page, text)  # nor an autolink
    at.switch_page("pages/runs.py").run()
    assert any("Last message" in text for text in _markdown_of(at))


def test_on_a_class_server_the_runs_and_train_tables_say_whose_run_it_is(bobs_run):
    from app_helpers import app_test

    at = app_test()
    at.session_state["_person"] = ADA
    at.run()
    for page in ("pages/runs.py", "pages/train.py"):
        at.switch_page(page).run()
        table = at.dataframe[0].value
        assert list(table["by"]) == ["Bob"], page
