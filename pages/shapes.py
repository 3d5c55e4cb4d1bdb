"""Shapes: what every layer does to the tensor, and where the residual adds happen."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages import _ui
from resnet_core import SpecError
from resnet_core.nets.spec import spec_label
from resnet_core.views.charts import shape_profile_chart
from resnet_core.views.diagram import fmt_shape, mark_shape_changes, shape_profile

_ui.require_router()

HIGHLIGHT = {  # change -> row colour; the first match wins
    "shortcut": "background-color: #d6e6f5",
    "spatial": "background-color: #fde0c5",
    "channels": "background-color: #e3f1dc",
}


def _row_style(row: pd.Series) -> list[str]:
    for word, css in HIGHLIGHT.items():
        if word in row["change"]:
            return [css] * len(row)
    return [""] * len(row)


def _readable(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in ("input_shape", "output_shape"):
        frame[column] = frame[column].map(fmt_shape)
    return frame.rename(columns={"input_shape": "input", "output_shape": "output"})


st.title("Shapes, layer by layer")
spec = _ui.current_spec()
label = spec_label(spec)
st.caption(f"Net: **{label}** (change it on the Build page). Shapes leave out the batch dimension.")
side = st.number_input(
    "Input height = width (pixels)",
    min_value=1,
    max_value=1024,
    value=_ui.default_side(spec),
    step=8,
    key=f"shapes_side_{label}",
    help=f"This net downsamples {spec.min_input_size()}x, so the input must be at least that big.",
)
try:
    with st.spinner("Tracing ..."):
        layers = mark_shape_changes(_ui.shapes_of(spec.to_json(), int(side)))
        blocks = _ui.blocks_of(spec.to_json(), int(side))
except SpecError as error:
    _ui.error_box(error, "Pick a larger input size.")
    st.stop()

st.subheader("Channels grow as the picture shrinks")
_ui.show_chart(
    shape_profile_chart(shape_profile(layers)), f"{label}-shape-profile", shape_profile(layers)
)

st.subheader("Blocks and their residual adds")
st.caption(
    "Each residual block computes `out + shortcut(x)`: identity where the shape is kept, "
    "a projection or zero-padding where it changes. Plain blocks have no add."
)
block_view = _readable(blocks)[
    ["name", "kind", "input", "output", "shortcut", "add", "downsamples", "params", "mult_adds"]
]
_ui.show_table(
    block_view.style.apply(
        lambda row: (
            ["background-color: #d6e6f5" if row["shortcut"] in ("projection", "zero_pad") else ""]
            * len(row)
        ),
        axis=1,
    ),
    f"{label}-blocks",
)

st.subheader("Every layer")
st.markdown(
    "Highlighted: :blue-background[shortcut projects / zero-pads] "
    ":orange-background[spatial size halves] :green-background[channels change]"
)
only_changes = st.toggle("Only rows where the shape changes", key="shapes_only_changes")
view = _readable(layers)
if only_changes:
    view = view[view["change"] != ""]
_ui.show_table(view.style.apply(_row_style, axis=1), f"{label}-layers", height=480)
