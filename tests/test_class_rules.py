"""resnet_core.training.class_rules and the queue's owners: on a class server a student
queues within the teacher's limits and changes only their own jobs and runs; the teacher's
jobs go first; a laptop is limited by nothing."""

from __future__ import annotations

import json

import pytest
from app_helpers import QUICK_CPU_RUN

from resnet_core.common.classroom import OWNER, Person, new_token, student_cookie
from resnet_core.exercises.student_nets import student_spec
from resnet_core.training.class_rules import (
    LIMITS_FILE,
    ClassLimits,
    NotYours,
    OverLimit,
    check_change,
    check_request,
    owner_of_run,
    read_limits,
    write_limits,
)
from resnet_core.training.jobs import JobQueue

TOKEN = new_token()
STUDENT_SPEC = student_spec(3).to_dict()
ADA = student_cookie("Ada", TOKEN)[0]
BOB = student_cookie("Bob", TOKEN)[0]
TEACHER = Person("teacher", "Teacher", OWNER)
LAPTOP = Person("owner", "", OWNER)


@pytest.fixture
def queue(tmp_path):
    return JobQueue(tmp_path, devices=[])


def test_a_student_gets_one_job_at_a_time_and_the_teacher_any_number(queue):
    limits = ClassLimits()
    check_request(ADA, [QUICK_CPU_RUN], queue.active(), limits)
    queue.submit(QUICK_CPU_RUN, owner=ADA)
    with pytest.raises(OverLimit, match=r"You have 1 job\(s\) queued or running.*\(1\)"):
        check_request(ADA, [QUICK_CPU_RUN], queue.active(), limits)
    check_request(BOB, [QUICK_CPU_RUN], queue.active(), limits)  # Ada's job is not Bob's
    for _ in range(3):
        check_request(TEACHER, [QUICK_CPU_RUN], queue.active(), limits)
        queue.submit(QUICK_CPU_RUN, owner=TEACHER)
    check_request(ADA, [QUICK_CPU_RUN], queue.active(), ClassLimits(jobs_each=2))
    queue.cancel(queue.active()[0].job_id)  # Ada's, still queued: cancelled at once
    check_request(ADA, [QUICK_CPU_RUN], queue.active(), limits)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"epochs": 11}, r"epochs: 11 is more than this class allows \(10\)"),
     ({"subset": None}, r"training images: 50,000 is more than this class allows \(10,000\)"),
     ({"model": "resnet18"}, r"parameters: 11,164,352 is more than this class allows \(2,000,000\)"),
     ({"data_dir": "/etc"}, "data_dir: on a class server only the teacher picks the data"),
     ({"download": True}, "download: on a class server only the teacher downloads data"),
     ({"student": "mine.py"}, "student: the teacher has not turned on running students' code")],
)  # fmt: skip
def test_a_student_job_beyond_the_limits_is_refused_and_says_which(queue, change, message):
    config = {**QUICK_CPU_RUN, **change}
    with pytest.raises(OverLimit, match=message):
        check_request(ADA, [QUICK_CPU_RUN, config], queue.active(), ClassLimits())
    check_request(TEACHER, [config], queue.active(), ClassLimits(max_epochs=1))
    check_request(LAPTOP, [config], queue.active(), ClassLimits(max_epochs=1))


def test_a_student_reads_the_class_data_folder_and_runs_code_only_when_turned_on(queue):
    limits = ClassLimits(data_dir="/srv/cifar10")
    check_request(ADA, [{**QUICK_CPU_RUN, "data_dir": "/srv/cifar10"}], [], limits)
    with pytest.raises(OverLimit, match="data_dir"):
        check_request(ADA, [{**QUICK_CPU_RUN, "data_dir": "data"}], [], limits)
    check_request(ADA, [{**QUICK_CPU_RUN, "data_dir": "data"}], [], ClassLimits())  # default
    student = {**QUICK_CPU_RUN, "student": "mine.py", "model": STUDENT_SPEC}
    check_request(ADA, [student], [], ClassLimits(exercises=True))


def test_only_the_owner_or_the_teacher_may_cancel_or_delete(queue):
    job = queue.submit(QUICK_CPU_RUN, owner=ADA)
    group = queue.submit_group([QUICK_CPU_RUN, {**QUICK_CPU_RUN, "model": "plain20"}], owner=BOB)
    cli = queue.submit(QUICK_CPU_RUN)  # from the command line: nobody's
    check_change(ADA, queue.get(job.job_id))
    for person in (TEACHER, LAPTOP):
        for any_job in (job, group, cli):
            check_change(person, queue.get(any_job.job_id))
    for theirs in (group, cli):
        with pytest.raises(NotYours, match="someone else's"):
            check_change(ADA, queue.get(theirs.job_id))
    assert queue.get(job.job_id).owner_name == "Ada" and queue.get(cli.job_id).owner == ""
    jobs = queue.jobs()
    assert owner_of_run(jobs, group.run_ids[1]).owner == BOB.key
    assert owner_of_run(jobs, "20991231-000000-resnet20-abcdef") is None


def test_the_teachers_jobs_go_before_students_queued_earlier(tmp_path):
    queue = JobQueue(tmp_path, devices=[], worker=["true"])
    first = queue.submit(QUICK_CPU_RUN, owner=ADA)
    second = queue.submit(QUICK_CPU_RUN, owner=BOB)
    teacher = queue.submit(QUICK_CPU_RUN, owner=TEACHER)
    assert [queue.position(j.job_id) for j in (teacher, first, second)] == [1, 2, 3]
    started = queue.pump()
    assert [job.job_id for job in started][:1] == [teacher.job_id]


def test_the_limits_file_round_trips_and_a_bad_one_gives_the_defaults(tmp_path):
    assert read_limits(tmp_path) == ClassLimits()
    write_limits(tmp_path, ClassLimits(jobs_each=3, max_epochs=2, exercises=True))
    assert read_limits(tmp_path) == ClassLimits(jobs_each=3, max_epochs=2, exercises=True)
    for bad in ({"jobs_each": 0}, {"jobs_each": "9"}, {"max_epochs": 1e9}, [], {"x": 1}):
        (tmp_path / LIMITS_FILE).write_text(json.dumps(bad))
        assert read_limits(tmp_path) == ClassLimits(), bad
    with pytest.raises(ValueError):
        write_limits(tmp_path, ClassLimits(jobs_each=0))
