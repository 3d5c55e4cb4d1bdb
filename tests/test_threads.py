"""resnet_core.training.threads: the training threads follow whichever count is faster now,
measured on a clock the test controls."""

from __future__ import annotations

import pytest
from app_helpers import QUICK_CPU_RUN

from resnet_core.training import threads
from resnet_core.training.callbacks import Callback
from resnet_core.training.lockstep import LockstepGroup
from resnet_core.training.threads import ThreadTuner


class Machine:
    """A clock that advances by the time a batch takes at the thread count in effect."""

    def __init__(self, seconds: dict[int, float], threads: int = 2) -> None:
        self.seconds, self.threads, self.now, self.calls = seconds, threads, 0.0, []

    def set_threads(self, count: int) -> None:
        self.threads = count
        self.calls.append(count)

    def clock(self) -> float:
        return self.now

    def batch(self) -> None:
        self.now += self.seconds[self.threads]


def train(tuner: ThreadTuner, machine: Machine, batches: int) -> list[str]:
    said = []
    for _ in range(batches):
        machine.batch()
        said += [message] if (message := tuner.tick()) else []
    return said


def tuner_on(machine: Machine) -> ThreadTuner:
    tuner = ThreadTuner(most=2, clock=machine.clock, set_threads=machine.set_threads)
    tuner.restart()
    machine.batch()  # the first batch of an epoch only starts the clock
    tuner.tick()
    return tuner


def test_a_busy_machine_moves_training_to_one_thread_and_says_why():
    machine = Machine({2: 0.55, 1: 0.40})
    tuner = tuner_on(machine)
    said = train(tuner, machine, threads.FIRST_TRIAL + threads.TRIAL)
    assert machine.threads == 1 and tuner.current == 1
    assert said == [
        "training on 1 thread: 0.40 s a batch, against 0.55 s on 2 threads "
        "(other work shares the cores)"
    ]
    train(tuner, machine, 500)  # every later trial of 2 threads loses, so 1 stays
    assert machine.threads == 1


def test_a_quiet_machine_keeps_every_thread_and_tries_one_less_and_less_often():
    machine = Machine({2: 0.30, 1: 0.54})
    tuner = tuner_on(machine)
    at_one = 0
    for _ in range(1000):
        said = train(tuner, machine, 1)
        at_one += machine.threads == 1
        assert said == []
    assert machine.threads == 2
    assert machine.calls.count(1) <= 7  # trials after 4, 30, 60, 120, 240, 240... batches
    assert at_one / 1000 < 0.03


def test_when_the_other_work_ends_training_goes_back_to_every_thread():
    machine = Machine({2: 0.55, 1: 0.40})
    tuner = tuner_on(machine)
    train(tuner, machine, threads.FIRST_TRIAL + threads.TRIAL)
    machine.seconds = {2: 0.30, 1: 0.54}
    said = train(tuner, machine, threads.PERIOD + threads.TRIAL)
    assert machine.threads == 2
    assert said == ["training on 2 threads again: 0.30 s a batch, against 0.54 s on 1 thread"]


def test_a_small_difference_changes_nothing_and_evaluation_is_not_a_batch():
    machine = Machine({2: 0.50, 1: 0.47})  # 1 thread 6 % faster: within the noise
    tuner = tuner_on(machine)
    assert train(tuner, machine, 300) == [] and machine.threads == 2
    machine = Machine({2: 0.50, 1: 0.47})
    tuner = tuner_on(machine)
    for _ in range(40):  # short epochs, each after an evaluation of a minute
        tuner.restart()
        machine.now += 60
        assert train(tuner, machine, 3) == []
    assert tuner.current == 2


def test_one_thread_to_begin_with_is_left_alone_and_close_restores_the_count():
    machine = Machine({1: 0.4}, threads=1)
    tuner = ThreadTuner(most=1, clock=machine.clock, set_threads=machine.set_threads)
    assert train(tuner, machine, 100) == [] and machine.calls == []
    machine = Machine({2: 0.55, 1: 0.40})
    tuner = tuner_on(machine)
    train(tuner, machine, threads.FIRST_TRIAL + threads.TRIAL)
    tuner.close()
    assert machine.threads == 2


@pytest.mark.parametrize("busy", [True, False])
def test_a_lockstep_group_on_a_cpu_tunes_between_batches_and_every_member_notes_it(busy):
    machine = Machine({2: 0.55, 1: 0.40} if busy else {2: 0.30, 1: 0.54})
    tuner = ThreadTuner(most=2, clock=machine.clock, set_threads=machine.set_threads)
    original = tuner.clock
    tuner.clock = lambda: (machine.batch(), original())[1]
    config = {**QUICK_CPU_RUN, "subset": 12 * 10, "batch_size": 10}
    group = LockstepGroup([config, {**config, "model": "plain20"}], threads=tuner)
    notes = [[] for _ in group.members]
    for index, member in enumerate(group.members):
        member.callbacks.append(_Notes(notes[index]))
    results = group.fit()
    assert [result.state for result in results] == ["done", "done"]
    expected = ["training on 1 thread: 0.40 s a batch, against 0.55 s on 2 threads "
                "(other work shares the cores)"] if busy else []  # fmt: skip
    assert notes == [expected, expected]
    assert machine.calls == ([1] if busy else [1, 2])


def test_cores_busy_at_the_start_begin_on_one_thread_until_every_thread_proves_faster():
    machine = Machine({2: 0.30, 1: 0.54})  # the other work ended as training began
    tuner = ThreadTuner(most=2, clock=machine.clock, set_threads=machine.set_threads, busy=1.9)
    assert machine.calls == []  # nothing changes before training does
    tuner.restart()
    machine.batch()
    assert tuner.tick() == (
        "training on 1 thread to begin with: other processes kept 1.9 of the 2 cores busy"
    )
    said = train(tuner, machine, threads.FIRST_TRIAL + threads.TRIAL)
    assert said == ["training on 2 threads: 0.30 s a batch, against 0.54 s on 1 thread"]
    assert machine.calls == [1, 2] and tuner.current == 2
    tuner.restart()  # the next epoch keeps the count
    assert machine.calls == [1, 2]


def test_a_quiet_start_or_one_core_busy_of_four_keeps_every_thread():
    for most, busy in ((2, 0.4), (4, 1.0), (2, None)):
        machine = Machine({most: 0.30, 1: 0.54}, threads=most)
        tuner = ThreadTuner(most=most, clock=machine.clock, set_threads=machine.set_threads, busy=busy)  # fmt: skip
        tuner.restart()
        assert train(tuner, machine, 3) == [] and machine.calls == []


def test_a_trial_far_slower_from_its_first_batch_ends_there():
    machine = Machine({2: 20.0, 1: 1.4})  # two busy processes: threads that wait lose turns
    tuner = ThreadTuner(most=2, clock=machine.clock, set_threads=machine.set_threads, busy=2.0)
    tuner.restart()
    machine.batch()
    tuner.tick()
    trial_batches = 0
    for _ in range(threads.FIRST_TRIAL + 1 + 2 * threads.PERIOD + 1 + 4 * threads.PERIOD + 1):
        trial_batches += machine.threads == 2  # this batch runs on 2 threads
        train(tuner, machine, 1)
    assert machine.calls == [1, 2, 1, 2, 1, 2, 1]  # three trials, after 4, 60 and 120 batches
    assert trial_batches == 3  # one batch each, not threads.TRIAL
    machine = Machine({2: 0.30, 1: 0.54})  # 1.8x slower: not clear at once, a whole trial
    tuner = tuner_on(machine)
    train(tuner, machine, threads.FIRST_TRIAL + 1)
    assert machine.threads == 1 and tuner.trying


def test_others_busy_counts_other_processes_not_this_one(tmp_path):
    import multiprocessing

    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
    spinner.start()
    try:
        assert threads.others_busy(window=0.5) >= 0.5  # a core taken by the spinner
    finally:
        stop.set()
        spinner.join()
    still = tmp_path / "stat"  # a kernel that counted no work at all: this process's is not
    still.write_text("cpu  100 0 50 1000 0 0 0 0 0 0\ncpu0 100 0 50 1000 0 0 0 0 0 0\n")
    sum(i * i for i in range(300_000))
    assert threads.others_busy(window=0.05, stat=still) == 0.0
    assert threads.others_busy(window=0.0, stat=tmp_path / "missing") is None


def _spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


class _Notes(Callback):
    def __init__(self, into: list[str]) -> None:
        self.into = into

    def on_note(self, trainer, event) -> None:
        if "thread" in event.message:
            self.into.append(event.message)
