"""Structural views of a network: a Graphviz diagram with the skip connections drawn, a
per-stage summary, and the rows of a shape trace where something changes.

The diagram is DOT text built from `trace_blocks` (and, expanded, `trace_shapes`), so it
needs no Graphviz binary: the browser renders it. Each residual block ends in a "+" node
fed by two edges, the block's layers and the shortcut (He et al. 2016, Fig. 2,
https://arxiv.org/abs/1512.03385); a plain block has no "+".
"""

from __future__ import annotations

import pandas as pd

from resnet_core.nets.block_kinds import BLOCK_KINDS

__all__ = [
    "block_diagram",
    "stage_summary",
    "mark_shape_changes",
    "shape_profile",
    "fmt_shape",
]

STAGE_COLOURS = (
    "#f2f2f2",
    "#dbe9f6",
    "#d9f0d3",
    "#fde0c5",
    "#e8dcf2",
    "#fbe3e8",
    "#e0f3f3",
    "#f6f0d0",
    "#e6e6e6",
    "#fff2cc",
)
SHORTCUT_TEXT = {"identity": "identity", "projection": "1x1 conv + BN", "zero_pad": "zero-pad"}


def shortcut_text(row: pd.Series) -> str:
    """The words on a block's skip edge: its shortcut, a projection as the block kind has it."""
    kind = BLOCK_KINDS.get(row["kind"])
    if row["shortcut"] == "projection" and kind is not None:
        return kind.projection_label
    return SHORTCUT_TEXT[row["shortcut"]]


def fmt_shape(shape: list[int] | tuple[int, ...]) -> str:
    """(1, 16, 32, 32) -> '16x32x32' (batch dropped)."""
    dims = list(shape)[1:] if len(shape) > 1 else list(shape)
    return "x".join(str(d) for d in dims)


def _quote(text: str) -> str:
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n") + '"'


def _block_label(row: pd.Series) -> str:
    kind = {
        **{name: block.label for name, block in BLOCK_KINDS.items()},
        "conv": "conv-BN-ReLU",
        "pool": "max-pool",
        "stem": "stem",
        "head": "pool + fc",
    }.get(row["kind"], row["kind"])
    out = fmt_shape(row["output_shape"])
    if row["downsamples"]:
        return f"{row['name']}\n{kind}, stride 2\n{fmt_shape(row['input_shape'])} -> {out}"
    if row["name"] == row["kind"]:
        return f"{kind}\n{out}"
    return f"{row['name']}\n{kind}\n{out}"


def _visible_rows(blocks: pd.DataFrame, keep: int | None) -> list[tuple[str, object]]:
    """('row', Series) and ('more', (count, stage, shortcut_row)) items in forward order."""
    if keep is None:
        return [("row", row) for _, row in blocks.iterrows()]
    items: list[tuple[str, object]] = []
    for _, group in blocks.groupby("stage", sort=True):
        if len(group) <= keep + 2 or group["kind"].iloc[0] in ("stem", "head"):
            items.extend(("row", row) for _, row in group.iterrows())
            continue
        items.extend(("row", row) for _, row in group.iloc[:keep].iterrows())
        hidden = group.iloc[keep:-1]
        items.append(("more", (len(hidden), hidden.iloc[0])))
        items.append(("row", group.iloc[-1]))
    return items


def _layer_nodes(
    lines: list[str], node: str, row: pd.Series, layers: pd.DataFrame
) -> tuple[str, str]:
    """A cluster of the block's own layers; returns its (first, last) node ids."""
    inside = layers[layers["layer"].str.startswith(row["name"] + ".")]
    inside = inside[~inside["layer"].str.contains(r"\.downsample")]
    lines.append(
        f"subgraph cluster_{node} {{ label={_quote(row['name'])}; style=rounded; color=grey60;"
    )
    ids = []
    for index, layer in inside.iterrows():
        short = layer["layer"][len(row["name"]) + 1 :]
        label = f"{short}: {layer['type']}\n{fmt_shape(layer['output_shape'])}"
        ids.append(f"{node}_l{index}")
        lines.append(f"{ids[-1]} [label={_quote(label)}, fontsize=10];")
    for a, b in zip(ids, ids[1:]):
        lines.append(f"{a} -> {b};")
    lines.append("}")
    return (ids[0], ids[-1]) if ids else (node, node)


def _stage_colour(row: pd.Series) -> str:
    return STAGE_COLOURS[int(row["stage"]) % len(STAGE_COLOURS)]


def _more_node(
    lines: list[str], node: str, previous: str, wrap: str, count: int, sample: pd.Series
) -> None:
    """A dashed "... N more blocks" node standing for a stage's hidden blocks (and their skips)."""
    colour = _stage_colour(sample)
    label = f"... {count} more {sample['kind']} blocks ...\n{fmt_shape(sample['output_shape'])}"
    lines.append(
        f'{node} [label={_quote(label)}, fillcolor={_quote(colour)}, style="dashed,rounded,filled"];'
    )
    lines.append(f"{previous} -> {node}{wrap};")
    if sample["shortcut"] not in ("", "none"):
        lines.append(
            f'{previous} -> {node} [style=dashed, color="#1f77b4", label={_quote(f"{count} skips")}];'
        )


def _block_body(
    lines: list[str],
    node: str,
    previous: str,
    wrap: str,
    row: pd.Series,
    layers: pd.DataFrame | None,
) -> str:
    """The block's node (expanded: its layers) with an edge from `previous`; returns its last node."""
    if layers is not None and row["kind"] in BLOCK_KINDS:
        first, last = _layer_nodes(lines, node, row, layers)
        lines.append(f"{previous} -> {first}{wrap};")
        return last
    colour = _stage_colour(row)
    lines.append(f"{node} [label={_quote(_block_label(row))}, fillcolor={_quote(colour)}];")
    lines.append(f"{previous} -> {node}{wrap};")
    return node


def _add_node(lines: list[str], node: str, previous: str, body_end: str, row: pd.Series) -> str:
    """The "+" where the block's output meets its shortcut from `previous`; returns its id."""
    shortcut = row["shortcut"]
    add = f"{node}_add"
    lines.append(
        f'{add} [label="+", shape=circle, style=filled, fillcolor="#1f77b4", '
        f"fontcolor=white, fontsize=16, width=0.4, fixedsize=true];"
    )
    lines.append(f"{body_end} -> {add};")
    # constraint=false keeps the skip edge from pushing the main path around.
    width = "2.5" if shortcut == "identity" else "1.5"
    lines.append(
        f'{previous} -> {add} [color="#1f77b4", penwidth={width}, constraint=false, '
        f'label={_quote(shortcut_text(row))}, fontcolor="#1f77b4"];'
    )
    return add


def _stack_rows(lines: list[str], stage_nodes: dict[int, list[str]]) -> None:
    """The "rows" layout: each stage's nodes on one rank, the rows stacked and left-aligned."""
    stage_nodes[min(stage_nodes)].insert(0, "input")
    stage_nodes[max(stage_nodes)].append("output")
    heads = [nodes[0] for nodes in stage_nodes.values()]
    for nodes in stage_nodes.values():
        lines.append("{rank=same; " + "; ".join(nodes) + ";}")
    for upper, lower in zip(heads, heads[1:]):
        lines.append(f"{upper} -> {lower} [style=invis, weight=10];")


def block_diagram(
    blocks: pd.DataFrame,
    title: str = "",
    keep: int | None = 2,
    layers: pd.DataFrame | None = None,
    direction: str = "rows",
) -> str:
    """Graphviz DOT source of a network, one node per block, skip connections drawn.

    Args:
        blocks: a `trace_blocks` frame.
        title: a caption drawn above the graph.
        keep: per stage, show this many blocks then one "N more" node and the last block;
            None draws every block.
        layers: a `trace_shapes` frame to draw each block's layers inside it (expanded view).
        direction: "rows" (each stage one row, stages top to bottom: fits a screen),
            "LR" (one line, left to right) or "TB" (one column, top to bottom).

    Returns:
        DOT text for `st.graphviz_chart` or any Graphviz renderer.
    """
    rows = direction == "rows"
    lines = [
        "digraph resnet {",
        # white, not transparent: black edges stay readable on a dark theme
        f"bgcolor=white; rankdir={'TB' if rows else direction}; newrank=true; nodesep=0.25; "
        "ranksep=0.35;",
        f"label={_quote(title)}; labelloc=t; fontsize=18; fontname=Helvetica;",
        'node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=12];',
        "edge [fontname=Helvetica, fontsize=10];",
        'input [label="input", shape=plaintext, style=""];',
    ]
    previous, previous_stage = "input", None
    stage_nodes: dict[int, list[str]] = {}
    for number, (what, item) in enumerate(_visible_rows(blocks, keep)):
        node = f"n{number}"
        stage = int(item[1]["stage"] if what == "more" else item["stage"])  # type: ignore[index]
        stage_nodes.setdefault(stage, []).append(node)
        # In rows, the edge into a new stage wraps to the next line: it must not rank nodes.
        wrap = " [constraint=false]" if rows and previous_stage not in (None, stage) else ""
        previous_stage = stage
        if what == "more":
            count, sample = item  # type: ignore[misc]
            _more_node(lines, node, previous, wrap, count, sample)
            previous = node
            continue
        row = item
        body_end = _block_body(lines, node, previous, wrap, row, layers)
        if row["shortcut"] in SHORTCUT_TEXT:
            previous = _add_node(lines, node, previous, body_end, row)
            stage_nodes[stage].append(previous)
        else:
            previous = body_end
    lines.append('output [label="class scores", shape=plaintext, style=""];')
    lines.append(f"{previous} -> output;")
    if rows and layers is None and stage_nodes:
        _stack_rows(lines, stage_nodes)
    lines.append("}")
    return "\n".join(lines)


def stage_summary(blocks: pd.DataFrame) -> pd.DataFrame:
    """One row per stage of a `trace_blocks` frame: blocks, output shape, shortcut, cost.

    Returns:
        DataFrame with columns stage, part, blocks, output, shortcuts, params, mult_adds.
    """
    rows = []
    for stage, group in blocks.groupby("stage", sort=True):
        kind = group["kind"].iloc[0]
        part = {"stem": "stem", "head": "head"}.get(kind, f"stage {stage}")
        shortcuts = sorted({s for s in group["shortcut"] if s})
        rows.append(
            {
                "stage": int(stage),
                "part": part,
                "blocks": int((group["kind"].isin([*BLOCK_KINDS, "conv"])).sum()) or 1,
                "output": fmt_shape(group["output_shape"].iloc[-1]),
                "shortcuts": ", ".join(shortcuts),
                "params": int(group["params"].sum()),
                "mult_adds": int(group["mult_adds"].sum()),
            }
        )
    return pd.DataFrame(rows)


def mark_shape_changes(layers: pd.DataFrame) -> pd.DataFrame:
    """A `trace_shapes` frame plus a `change` column saying what the layer does to the shape.

    `change` is "spatial halves", "channels change", both joined by "; ", "shortcut
    projects" / "shortcut zero-pads" for a shortcut layer, or "" where the shape is kept.
    """
    changes = []
    for _, row in layers.iterrows():
        notes = []
        if ".downsample" in row["layer"]:
            if row["type"] == "ZeroPadShortcut" or "ZeroPad" in row["type"]:
                notes.append("shortcut zero-pads")
            elif row["layer"].endswith(".downsample.0") or row["type"] == "Conv2d":
                notes.append("shortcut projects")
        inp, out = list(row["input_shape"]), list(row["output_shape"])
        if len(inp) == 4 and len(out) == 4:
            if out[2] < inp[2]:
                notes.append("spatial halves" if out[2] * 2 == inp[2] else "spatial shrinks")
            if out[1] != inp[1]:
                notes.append("channels change")
        changes.append("; ".join(notes))
    marked = layers.copy()
    marked["change"] = changes
    return marked


def shape_profile(layers: pd.DataFrame) -> pd.DataFrame:
    """Channels and spatial side after each main-path 4-D layer (shortcut layers left out).

    Returns:
        DataFrame with columns position, layer, channels, side.
    """
    rows = []
    for _, row in layers.iterrows():
        out = list(row["output_shape"])
        if len(out) != 4 or ".downsample" in row["layer"]:
            continue
        rows.append(
            {"position": len(rows), "layer": row["layer"], "channels": out[1], "side": out[2]}
        )
    return pd.DataFrame(rows, columns=["position", "layer", "channels", "side"])
