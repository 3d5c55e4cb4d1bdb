"""On a class server the pages' own helpers refuse a student's forged request: deleting or
cancelling someone else's run is checked on the server, not only hidden from the page."""

from __future__ import annotations

import os
import time

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


def test_a_student_cannot_delete_or_cancel_a_classmates_run_even_by_asking_directly(
    tmp_path, monkeypatch
):
    import streamlit as st

    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("RESNET_EXPLORER_CLASS", "on")
    monkeypatch.setenv("RESNET_EXPLORER_TEACHER_TOKEN", TOKEN)
    ada, bob = student_cookie("Ada", TOKEN)[0], student_cookie("Bob", TOKEN)[0]
    queue = JobQueue(tmp_path, worker=["true"])
    done = queue.submit(QUICK_CPU_RUN, owner=bob)
    fit(QUICK_CPU_RUN, run_dir=queue.run_dir(done))
    queue.update(done.job_id, state="done", finished=time.time())
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
