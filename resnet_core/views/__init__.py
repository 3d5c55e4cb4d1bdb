"""Views: what the app and the lecture show, made from measurements and run folders.
`charts` (Altair), `diagram` (Graphviz DOT and shape tables), `diagram_svg` (the diagram as
SVG), `exercises` (the exercises' commands and the mistakes they name), `explain` (sentences
computed from numbers), `lockstep` (several nets' curves on one
chart), `inspect`, `lesion`, `landscape` and `mechanisms` (those pages' charts and sentences), `lecture`
(the slides' data) and `lecture_charts` (their figures). No Streamlit here: pages render what
these return.

May import: every layer below it (`common`, `nets`, `analysis`, `training`, `studies`); never
`cli`.
"""
