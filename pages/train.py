"""Train: start runs in the background, watch them live, cancel them."""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from pages import _class, _ui
from resnet_core import list_presets
from resnet_core.nets.spec import PRESETS, SpecError, spec_label
from resnet_core.training import runs
from resnet_core.training.choices import CHOICE_NOTES, READY_CHOICES, missing_device
from resnet_core.training.class_rules import OverLimit, check_request
from resnet_core.training.config import TrainConfig, field_help
from resnet_core.training.data import cifar10_layout
from resnet_core.training.events import EpochEnd, Event, Note, Start, Step
from resnet_core.training.jobs import Job, gpu_choices
from resnet_core.views.charts import epoch_chart, metrics_frames, step_chart
from resnet_core.views.explain import fmt_seconds, run_sentence
from resnet_core.views.lockstep import (
    GROUP_METRICS,
    SMOOTH_STEPS,
    demo_gaps,
    gap_sentence,
    lockstep_frames,
    lockstep_sentence,
    twin_sentence,
)

_ui.require_router()

# Widgets for TrainConfig fields: a field with choices (in its metadata, or here) gets a
# selectbox, the others a toggle, number or text box from their type.
CHOICES = {
    "device": ("auto", "cpu", "cuda", "mps"),
    **{
        f.name: f.metadata["choices"]
        for f in dataclasses.fields(TrainConfig)
        if "choices" in f.metadata
    },
}
MAIN_FIELDS = (
    "model",
    "dataset",
    "epochs",
    "batch_size",
    "subset",
    "lr",
    "optimizer",
    "schedule",
    "device",
)
HIDDEN_FIELDS = ("data_dir", "student")
GPUS_HELP = (
    "More than 1 trains data-parallel through torchrun: each GPU takes its share of every "
    "batch (batch size is the total) and the run waits until that many GPUs are free"
)
MODEL_HELP = "; or type a preset name or paste a spec's JSON (the Build page's Spec box)"


def _defaults() -> dict:
    defaults = TrainConfig().to_dict()
    if not _class.person().in_charge:  # a student's form starts within the class's limits
        limits = _class.limits()
        defaults["subset"] = min(defaults["subset"] or 50_000, limits.max_subset)
        defaults["epochs"] = min(defaults["epochs"], limits.max_epochs)
    return defaults


def _current_option() -> str | None:
    """'current net: <label>' when the Build page's net is not a preset (else None)."""
    choice = _ui.model_choice()
    return None if choice in PRESETS else choice


def _model_value(choice: str) -> str | dict:
    """The model a choice stands for: a preset name, the current net's spec, or a typed spec
    (JSON) or preset name; SpecError if it names no net."""
    if choice == _current_option():
        return _ui.current_spec().to_dict()
    spec = _ui.net_from_param(choice)
    label = spec_label(spec)
    return label if label in PRESETS else spec.to_dict()


def _field_choices(name: str, default) -> list | None:
    if name == "model":
        current = _current_option()
        return ([current] if current else []) + list_presets()
    if name == "dataset" and default == "synthetic":
        return ["synthetic"]  # CIFAR-10 is not there (the sidebar says how to get it)
    if name in CHOICES:
        choices = list(CHOICES[name])
        return choices if default in choices else [default, *choices]  # e.g. device "cuda:1"
    return None


def _widget(container, name: str, value, default, prefix: str):
    label = name.replace("_", " ")
    key = f"train_f_{prefix}_{name}"  # a new ready choice refills the form
    help_text = field_help(name)
    choices = _field_choices(name, default)
    if choices:
        chosen = key in st.session_state  # e.g. set by "Train this net" on the Build page
        return container.selectbox(
            label,
            choices,
            index=None if chosen else choices.index(value) if value in choices else 0,
            key=key,
            help=help_text + MODEL_HELP if name == "model" else help_text,
            accept_new_options=name == "model",
        )
    if isinstance(default, bool):
        return container.toggle(label, bool(value), key=key, help=help_text)
    if isinstance(default, int) or (
        default is None and name in ("subset", "eval_every", "grad_norm_every")
    ):
        return container.number_input(
            f"{label} (0 = all)" if name == "subset" else label,
            value=int(value) if value is not None else 0,
            step=1,
            key=key,
            help=help_text + (" (0 = off / all)" if default is None else ""),
        )
    if isinstance(default, float):
        return container.number_input(
            label, value=float(value), format="%.4g", key=key, help=help_text
        )
    if isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value))  # milestones: "8, 12"
    return container.text_input(label, "" if value is None else str(value), key=key, help=help_text)


def _form(base: dict, defaults: dict, prefix: str, locked: tuple[str, ...] = ()) -> dict | None:
    """The form over TrainConfig; returns the config to start when submitted."""
    found = cifar10_layout(_ui.data_dir()) is not None
    if not found:
        base = {**base, "dataset": "synthetic"}
        defaults = {**defaults, "dataset": "synthetic"}
    values = dict(base)
    with st.form("train_form"):
        columns = st.columns(3)
        main = [name for name in MAIN_FIELDS if name in defaults and name not in locked]
        for index, name in enumerate(main):
            values[name] = _widget(columns[index % 3], name, base.get(name), defaults[name], prefix)
        if gpus := gpu_choices():  # only on a machine with more than one GPU
            st.selectbox("GPUs for this run", gpus, key="train_gpus", help=GPUS_HELP)
        with st.expander("More settings"):
            more = st.columns(3)
            rest = [n for n in defaults if n not in MAIN_FIELDS and n not in HIDDEN_FIELDS]
            for index, name in enumerate(rest):
                values[name] = _widget(
                    more[index % 3], name, base.get(name), defaults[name], prefix
                )
        submitted = st.form_submit_button(
            "Start training", type="primary", icon=":material/play_arrow:"
        )
    if not found:
        st.info(
            "CIFAR-10 is not here yet, so runs use the **synthetic** stand-in set (coloured "
            "patterns, clearly not CIFAR-10). "
            + (
                "Name the folder in the sidebar to train on the real one."
                if _class.person().in_charge
                else "Ask your teacher to name its folder."
            )
        )
    if not submitted:
        return None
    for name, default in defaults.items():
        if default is None and values.get(name) in (0, ""):
            values[name] = None  # 0 / empty means "off" for optional numbers
    values["data_dir"] = str(_ui.data_dir())
    if "model" in values:
        try:
            values["model"] = _model_value(str(values["model"]))
        except SpecError as error:
            _ui.error_box(error, "Nothing was started; pick a model from the list.")
            return None
    return values


def _start(configs: list[dict]) -> None:
    """Queue one run, or several nets as one lockstep group."""
    queue, who = _ui.job_queue(), _class.person()
    try:
        check_request(who, configs, queue.active(), _class.limits())
        if len(configs) > 1:
            job = queue.submit_group(configs, owner=who)
        else:
            job = queue.submit(configs[0], gpus=st.session_state.get("train_gpus", 1), owner=who)
    except OverLimit as error:
        _ui.error_box(error, "Nothing was started.")
        return
    except (ValueError, TypeError) as error:
        _ui.error_box(error, "Nothing was started; fix the setting and press Start again.")
        return
    st.session_state["train_watch"] = job.job_id
    st.toast(f"Queued {job.label}.", icon=":material/schedule:")


def _status_line(job: Job, queue) -> str:
    if job.state == "queued":
        position = queue.position(job.job_id)
        return f"waiting: number {position} in line for {job.device}"
    if job.state in ("starting", "running"):
        return f"{job.state} on {', '.join(job.placed) or job.device}"
    return job.state + (f": {job.message}" if job.message else "")


def _total_steps(events: list[Event]) -> int | None:
    start = next((e for e in events if isinstance(e, Start)), None)
    return start.total_steps if start is not None and start.total_steps else None


def _last_step(events: list[Event]) -> int:
    return max((e.step for e in events if isinstance(e, Step)), default=0)


def _progress(job: Job, events: list[Event]) -> None:
    config = job.config
    steps = [e for e in events if isinstance(e, Step)]
    epochs_done = sum(1 for e in events if isinstance(e, EpochEnd))
    total_epochs = int(config.get("epochs") or 1)
    total_steps = _total_steps(events)
    if steps and total_steps:
        fraction = min(1.0, steps[-1].step / float(total_steps))
    else:
        fraction = min(1.0, epochs_done / total_epochs)
    eta = steps[-1].eta_s if steps else None
    speed = steps[-1].images_per_s if steps else None
    text = f"{fraction:.0%}: epoch {min(epochs_done + 1, total_epochs)} of {total_epochs}, ETA {fmt_seconds(eta)}"
    if speed:
        text += f", {speed:,.0f} images/s"
    st.progress(fraction, text=text)


def _charts(job: Job, events: list[Event]) -> None:
    steps, epochs = metrics_frames(events)
    name = job.run_id
    left, right = st.columns(2)
    with left:
        if len(steps) and "loss" in steps:
            _ui.show_chart(
                step_chart(steps, "loss", "Training loss per step", "loss"), f"{name}-loss", steps
            )
            total = _total_steps(events)
            st.caption(
                f"At step {int(steps['step'].max())}"
                + (f" of {total}" if total else "")
                + f" ({len(steps)} points logged)."
            )
        else:
            st.caption("The loss curve appears after the first steps.")
        if len(steps) and "lr" in steps:
            _ui.show_chart(
                step_chart(steps, "lr", "Learning rate", "learning rate", height=180), f"{name}-lr"
            )
    with right:
        if len(epochs):
            _ui.show_chart(epoch_chart(epochs), f"{name}-accuracy", epochs)
        else:
            st.caption("Accuracy appears after the first epoch.")
        if len(steps) and "images_per_s" in steps:
            _ui.show_chart(
                step_chart(steps, "images_per_s", "Throughput", "images / s", height=180),
                f"{name}-throughput",
            )


def _member_names(job: Job) -> list[str]:
    """A distinct name per net of a group (the model, numbered if two share it)."""
    labels = [member.get("label") or f"net {i}" for i, member in enumerate(job.members, 1)]
    return [
        label if labels.count(label) == 1 else f"{label} #{index}"
        for index, label in enumerate(labels, 1)
    ]


def _layers(config: dict) -> int:
    try:
        return TrainConfig.from_dict(config).spec().num_layers()
    except ValueError:
        return 0


def _is_residual(config: dict) -> bool:
    try:
        return TrainConfig.from_dict(config).spec().residual
    except ValueError:
        return True


def _group_charts(job: Job, member_events: dict[str, list[Event]]) -> None:
    frames = lockstep_frames(member_events)
    residual = {name: _is_residual(m["config"]) for name, m in zip(member_events, job.members)}
    st.caption(lockstep_sentence(frames, residual=residual))
    if twin := _student_twin(job, list(member_events)):  # a student's net and its reference
        st.caption(twin_sentence(frames, *twin))
    depth = {name: _layers(m["config"]) for name, m in zip(member_events, job.members)}
    gaps = [] if twin else demo_gaps(frames, residual, depth)
    for found in gaps:
        st.markdown(gap_sentence(found))
    marks = {"loss": [(g.step, f"gap opened at step {g.step}") for g in gaps if g.open]}
    _ui.show_metric_charts(
        frames, GROUP_METRICS, residual, job.job_id, lambda value: _group_wait(value, job.config),
        marks,
    )  # fmt: skip
    st.caption(
        f"Training accuracy is the running mean of the last {SMOOTH_STEPS} logged batches. "
        "Every net sees the same batches in the same order, one step of each in turn."
    )
    _ui.show_grad_heatmap(member_events, f"{job.job_id}-layer-gradients", frames)


def _student_twin(job: Job, names: list[str]) -> tuple[str, str] | None:
    """The names of a student's net and of the reference net it started from, if the group
    trains one (`exercises.student_nets.student_group`)."""
    configs = [member["config"] for member in job.members]
    for i, config in enumerate(configs):
        if config.get("student"):
            same = [j for j, other in enumerate(configs)
                    if not other.get("student") and other.get("model") == config.get("model")]  # fmt: skip
            return (names[i], names[same[0]]) if same else None
    return None


def _group_wait(value: str, config: dict) -> str:
    """Why a group chart is still empty."""
    if value == "test_acc":
        return "appears after the first epoch."
    every = int(config.get("grad_norm_every") or 0)
    if value == "ratio" and every:
        return f"appears at step {every} (gradient norms are logged every {every} steps)."
    if value == "ratio":
        return "off for this group (set grad norm every under More settings)."
    return "appears after the first steps."


def _outcome(job: Job, queue, events: list[Event]) -> None:
    """Progress and a cancel button while the job runs, how it ended once it has."""
    if job.active:
        if job.state == "queued":
            st.info(_status_line(job, queue).capitalize() + ".", icon=":material/schedule:")
        else:
            _progress(job, events)
        if _class.person().owns(job.owner) and st.button(
            "Cancel this run", key=f"cancel_{job.job_id}", icon=":material/stop_circle:"
        ):
            _ui.cancel_job(job.job_id)
    elif job.state == "failed":
        _ui.error_box(RuntimeError(job.message or "the run failed"), job.advice)
    elif job.state in ("cancelled", "interrupted"):
        st.warning(f"This run was {job.state}. {job.advice}".strip())
    else:
        for run_id in job.run_ids:
            info = runs.run_info(queue.runs_dir / run_id)
            best = None if info.best_test_acc is None else 100 * info.best_test_acc
            sentence = run_sentence(info.model, info.state, best, info.epoch, info.seconds)
            (st.success if info.state == "done" else st.warning)(sentence)


def _notes(events: list[Event]) -> None:
    """What the run changed on its own, and why (e.g. torch.compile turned off)."""
    for event in events:
        if isinstance(event, Note):
            st.info(_ui.shown(event.message), icon=":material/info:")


def _pick(recent: list[Job], queue) -> Job:
    """The job table and the 'Watch' choice (kept across reruns)."""
    table = pd.DataFrame(
        [
            {
                "run": job.label or job.run_id,
                "status": _status_line(job, queue),
                "device": job.device,
                "run folder": ", ".join(job.run_ids),
            }
            for job in recent
        ]
    )
    if _class.class_server():  # whose job it is: the name its student typed
        table.insert(1, "by", [job.owner_name for job in recent])
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"status": st.column_config.TextColumn(width="large")},
    )
    by_id = {job.job_id: job for job in recent}
    ids = list(by_id)
    watched = st.session_state.get("train_watch")
    chosen = st.selectbox(
        "Watch",
        ids,
        index=ids.index(watched) if watched in ids else 0,
        format_func=lambda i: f"{by_id[i].label or by_id[i].run_id}: {by_id[i].state}",
    )
    st.session_state["train_watch"] = chosen
    return by_id[chosen]


@st.fragment(run_every=1.0)
def live() -> None:
    """Redraws every second from the files on disk, so any browser sees the same runs. Once
    none runs, the whole page reruns: the runs are then drawn once, outside any fragment, so
    that their download buttons are not replaced every second under a teacher's click."""
    if not _ui.job_queue().active():
        st.rerun(scope="app")
    runs_view()


@st.fragment(run_every=3.0)
def watch() -> None:
    """While nothing runs: redraws nothing, and reruns the page when a run starts (from this
    browser or another)."""
    if _ui.job_queue().active():
        st.rerun(scope="app")


def runs_view() -> None:
    """The runs: the one watched, with its progress, outcome and charts."""
    queue = _ui.job_queue()
    all_jobs = queue.jobs()
    if not all_jobs:
        st.caption("No runs started from this app yet.")
        return
    finished = [job for job in reversed(all_jobs) if not job.active]
    job = _pick([job for job in all_jobs if job.active] + finished[:5], queue)
    if job.config.get("dataset") == "synthetic":
        st.caption("Trained on the **synthetic** stand-in set, not CIFAR-10.")
    if not job.members:
        events = runs.read_events(queue.run_dir(job))
        _outcome(job, queue, events)
        _notes(events)
        _charts(job, events)
        _ui.show_grad_heatmap({job.label or job.run_id: events}, f"{job.run_id}-layer-gradients")
        return
    member_events = {
        name: runs.read_events(queue.runs_dir / run_id)
        for name, run_id in zip(_member_names(job), job.run_ids)
    }
    _outcome(job, queue, max(member_events.values(), key=_last_step))
    _group_charts(job, member_events)


st.title("Train")
st.caption(
    "Runs go to a queue on disk: one run per device at a time (per GPU, as many as the "
    "server allows), the rest wait their turn. "
    "They keep running if you switch pages, reload, or close the browser."
)
defaults = _defaults()
busy = bool(_ui.job_queue().active())
with st.expander("Start a run", expanded=not busy, icon=":material/play_circle:"):
    recipe = st.pills(
        "Ready choices", list(READY_CHOICES), key="train_recipe", selection_mode="single"
    )
    planned = (
        [{**defaults, **overrides} for overrides in READY_CHOICES[recipe]] if recipe else [defaults]
    )
    if recipe in CHOICE_NOTES:
        st.caption(CHOICE_NOTES[recipe])
    if recipe and (problem := missing_device(planned)):
        st.warning(problem, icon=":material/memory:")
    if len(planned) > 1:
        st.caption(
            f"This trains {len(planned)} nets ({', '.join(map(str, (c['model'] for c in planned)))}) "
            "together, with the settings below (model aside): one process, the same batches in "
            "the same order, one step of each in turn, so their curves grow side by side."
        )
    prefix = str(list(READY_CHOICES).index(recipe)) if recipe else "own"
    config = _form(planned[-1], defaults, prefix, locked=("model",) if len(planned) > 1 else ())
    if config is not None:
        changed = {k: v for k, v in config.items() if v != planned[-1].get(k) and k != "model"}
        configs = [{**c, **changed} for c in planned] if len(planned) > 1 else [config]
        _start(configs)
st.subheader("Runs")
if _ui.job_queue().active():
    live()
else:
    runs_view()
    watch()
