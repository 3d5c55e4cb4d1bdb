"""Views: what the app and the lecture show, made from measurements and run folders.
`charts` (Altair), `diagram` (Graphviz DOT and shape tables), `diagram_svg` (the diagram as
SVG), `explain` (sentences computed from numbers), `lecture` (the slides' data). No Streamlit
here: pages render what these return.

May import: every layer below it (`common`, `nets`, `analysis`, `training`); never `cli`.
"""
