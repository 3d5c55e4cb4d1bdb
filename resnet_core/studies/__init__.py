"""Studies: whole measurements of trained runs, and the result files they write. `lesion`
deletes blocks of a run's best checkpoint (Veit et al. 2016), `landscape` measures its
training loss around its weights (Li et al. 2018), `mechanisms` measures shattered gradients,
short paths and the branch variance of every block variant, and reads the variants' training
runs, `datasets` says which test set a run is judged on. Each picks a run's weights and images, runs the pure computations of
`resnet_core.analysis` on them, and reads and writes the results that ship in
checkpoints/demo. What the numbers mean, in charts and sentences, is `resnet_core.views`.

No chart or app library here (altair, streamlit), so the command line runs a study on a
machine that has neither.

May import: `resnet_core.common`, `resnet_core.nets`, `resnet_core.analysis`,
`resnet_core.training`; never `views` or `cli`.
"""
