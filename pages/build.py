"""Build: pick a preset or assemble a net; see its diagram, size, stages and spec."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from pages import _ui
from resnet_core import ArchSpec, SpecError, list_presets
from resnet_core.common.device import device_name, memory_budget, resolve_device
from resnet_core.nets.onnx_export import SERVER_EXPORT_BYTES, ExportError, check_exportable
from resnet_core.nets.size import check_buildable, check_server_work
from resnet_core.nets.spec import (
    BLOCKS,
    PRESET_INFO,
    PRESETS,
    SHORTCUTS,
    STEMS,
    parse_int_list,
    spec_label,
)
from resnet_core.training.config import TrainConfig
from resnet_core.views.diagram import block_diagram, stage_summary
from resnet_core.views.diagram_svg import block_diagram_svg
from resnet_core.views.explain import build_sentence, fmt_count, training_size_sentence

_ui.require_router()

TRAIN_BATCH = TrainConfig.batch_size  # the Train page's default batch, for the size estimate


def _pick_preset() -> None:
    name = st.session_state.get("build_preset")
    if name:
        _ui.set_net(PRESETS[name])


def _choose_preset(spec: ArchSpec) -> None:
    label = spec_label(spec)
    # Follow a net chosen elsewhere (a link, the Runs page) before the widget is drawn.
    st.session_state["build_preset"] = label if label in PRESETS else None
    st.selectbox(
        "Preset",
        list_presets(),
        key="build_preset",
        placeholder="a custom net is loaded: pick a preset to replace it",
        format_func=lambda name: f"{name}: {PRESET_INFO[name]['description']}",
        on_change=_pick_preset,
    )


# The form's choices: ArchSpec field -> (options, help).
_CHOICES = {
    "block": (tuple(BLOCKS), None),
    "stem": (STEMS, "cifar: 3x3 conv for 32x32 images; imagenet: 7x7 stride-2 conv + max-pool"),
    "shortcut": (
        SHORTCUTS,
        "projection: 1x1 conv + BN (option B); zero_pad: no parameters (option A)",
    ),
}


def _select(column, label: str, spec: ArchSpec, field: str) -> str:
    """A selectbox for one of the spec's choice fields, starting at the spec's value."""
    options, help = _CHOICES[field]
    return column.selectbox(label, options, index=options.index(getattr(spec, field)), help=help)


def _custom_form(spec: ArchSpec) -> dict | None:
    """The custom-net form, filled from `spec`: ArchSpec's arguments once submitted, else None."""
    with st.form("build_custom"):
        left, middle, right = st.columns(3)
        block = _select(left, "Block", spec, "block")
        stem = _select(left, "Stem", spec, "stem")
        depths = middle.text_input(
            "Blocks per stage",
            ", ".join(map(str, spec.depths)),
            key="build_depths",
            help="e.g. 3, 3, 3 for ResNet-20; every stage after the first halves the image",
        )
        widths = middle.text_input(
            "Width per stage",
            ", ".join(map(str, spec.widths)),
            key="build_widths",
            help="channels per stage (bottleneck: inner width, output is 4x)",
        )
        residual = right.toggle("Skip connections (residual)", spec.residual)
        zero_init = right.toggle(
            "Branches start at zero (zero-init)",
            spec.zero_init,
            help="the last BatchNorm of each residual branch starts at scale 0 (Goyal et al. "
            "2017): every block begins as the identity",
        )
        shortcut = _select(right, "Shortcut where the shape changes", spec, "shortcut")
        classes = right.number_input(
            "Classes", min_value=1, max_value=100_000, value=spec.num_classes
        )
        submitted = st.form_submit_button("Build this net", type="primary")
    if not submitted:
        return None
    return {
        "stem": stem,
        "block": block,
        "depths": depths,
        "widths": widths,
        "residual": residual,
        "zero_init": zero_init,
        "shortcut": shortcut,
        "num_classes": int(classes),
        "in_channels": spec.in_channels,
    }


def _load(make: Callable[[], ArchSpec], advice: str = "") -> bool:
    """Make the net `make` builds the current one (and rerun); False, with a message, if it
    cannot be built."""
    try:
        new = make()
        check_buildable(new)
        check_server_work(new, _ui.default_side(new))
    except SpecError as error:
        _ui.error_box(error, advice)
        return False
    _ui.set_net(new)
    st.rerun()
    return True


def _paste_json() -> None:
    with st.expander("Paste a spec (JSON)"):
        text = st.text_area(
            "Spec JSON",
            key="build_json",
            height=160,
            placeholder='{"block": "basic", "depths": [3, 3, 3], "widths": [16, 32, 64]}',
        )
        if st.button("Load this spec", key="build_load_json"):
            _load(lambda: ArchSpec.from_json(text))


def _from_form(fields: dict) -> ArchSpec:
    """The net the custom form describes (its lists typed as text); SpecError if invalid."""
    lists = {name: parse_int_list(fields[name], name) for name in ("depths", "widths")}
    return ArchSpec(**{**fields, **lists})


def _custom(spec: ArchSpec) -> None:
    fields = _custom_form(spec)
    advice = "Nothing was changed; fix the field and build again."
    if fields is not None and not _load(lambda: _from_form(fields), advice):
        return
    _paste_json()


def _train_button(spec: ArchSpec) -> None:
    """'Train this net' and what training it on CIFAR-10 takes here (the trainer's estimate)."""
    left, right = st.columns([1, 4], vertical_alignment="center")
    if left.button("Train this net", icon=":material/model_training:", key="build_train"):
        _ui.train_current_net()
    device = resolve_device("auto")
    right.caption(
        training_size_sentence(spec, TRAIN_BATCH, 32, memory_budget(device), device_name(device))
    )


def _onnx_button(row, spec: ArchSpec, name: str, side: int) -> None:
    """The ONNX download, made on click (and cached); a net too big for it gets a note."""
    try:
        check_exportable(spec, side, SERVER_EXPORT_BYTES)
    except ExportError as error:
        row.caption(
            f"No ONNX download here: {_ui.shown(error)}. `python -m resnet_core export {name}` makes it "
            "on your own machine."
        )
        return
    row.download_button(
        "ONNX model (open in Netron)",
        lambda: _ui.onnx_of(spec.to_json(), side),
        f"{name}.onnx",
        "application/octet-stream",
        on_click="ignore",
        icon=":material/download:",
        key="build_dl_onnx",
        help="The net with its initial weights, batch axis free: open it in Netron "
        "(netron.app) to browse every layer, or run it with any ONNX runtime",
    )


def _downloads(spec: ArchSpec, label: str, side: int, dot: str, blocks, keep) -> None:
    """The diagram as Graphviz source and SVG, and the net as ONNX, in one row."""
    name = label.replace(" ", "_")
    row = st.container(horizontal=True, gap="small")
    row.download_button(
        "Diagram (Graphviz .dot)",
        dot,
        f"{name}-diagram.dot",
        "text/vnd.graphviz",
        on_click="ignore",
        icon=":material/download:",
        key="build_dl_dot",
        help="Graphviz source of this diagram: open it in any Graphviz viewer, or turn it "
        "into SVG or PDF with `dot -Tsvg`",
    )
    row.download_button(
        "Diagram (SVG)",
        lambda: block_diagram_svg(blocks, label, keep=keep),
        f"{name}-diagram.svg",
        "image/svg+xml",
        on_click="ignore",
        icon=":material/download:",
        key="build_dl_svg",
        help="The blocks in one column with the skip connections, for slides and notes "
        "(layers inside blocks are left out)",
    )
    _onnx_button(row, spec, name, side)


def _overview(spec: ArchSpec) -> None:
    label = spec_label(spec)
    side = _ui.default_side(spec)
    with st.spinner("Tracing the net ..."):
        blocks = _ui.blocks_of(spec.to_json(), side)
    params, mult_adds = int(blocks["params"].sum()), int(blocks["mult_adds"].sum())
    columns = st.columns(4)
    columns[0].metric("Weighted layers", spec.num_layers())
    columns[1].metric("Parameters", fmt_count(params))
    columns[2].metric("Multiply-adds", fmt_count(mult_adds))
    columns[3].metric("Input", f"{spec.in_channels}x{side}x{side}")
    st.markdown(build_sentence(label, spec.num_layers(), params, mult_adds, side))
    _train_button(spec)

    st.subheader("Diagram")
    options = st.columns(3)
    every = options[0].toggle(
        "Show every block",
        key="build_every",
        help="Off: long stages show their first blocks, a '... N more' node, and the last",
    )
    expand = options[1].toggle("Show layers inside blocks", key="build_expand")
    layouts = {"one row per stage": "rows", "one line": "LR", "one column": "TB"}
    direction = options[2].radio("Layout", list(layouts), horizontal=True, key="build_dir")
    layers = _ui.shapes_of(spec.to_json(), side) if expand else None
    dot = block_diagram(
        blocks, label, keep=None if every else 2, layers=layers, direction=layouts[direction]
    )
    st.graphviz_chart(dot, width="stretch" if direction == "one line" else "content")
    _downloads(spec, label, side, dot, blocks, None if every else 2)
    st.caption(
        "Blue **+** nodes add the block's input back (the skip connection); "
        "a plain net has none. Colours mark stages."
    )

    st.subheader("Stages")
    _ui.show_table(stage_summary(blocks), f"{label}-stages".replace(" ", "_"))

    st.subheader("Spec")
    st.caption(
        "Copy it (icon at the top right of the box), download it, or share this page's "
        "link: the URL holds the net, so it reopens exactly this one."
    )
    st.code(spec.to_json(), language="json")
    st.download_button(
        "Download spec.json",
        spec.to_json(),
        "spec.json",
        "application/json",
        on_click="ignore",
        icon=":material/download:",
        key="build_dl_spec",
    )


st.title("Build a network")
spec = _ui.current_spec()
default_mode = "Preset" if spec_label(spec) in PRESETS else "Custom"
mode = st.segmented_control(
    "Start from", ["Preset", "Custom"], default=default_mode, key="build_mode"
)
if mode == "Custom":
    _custom(spec)
else:
    _choose_preset(spec)
_overview(_ui.current_spec())
