"""Analysis: measurements of one net, trained or not. `trace` follows every tensor shape
through a net, `probes` measures per-layer gradient norms and layer responses, `measure`
runs those probes the way the gradient page shows them, `inspect` scores a trained net's
predictions (per class, confusion, telling mistakes), `lesion` deletes blocks at test time
(Veit et al. 2016), `landscape` measures the loss along random directions around the
weights (Li et al. 2018), `mechanisms` measures shattered gradients, short paths and the
branch-to-skip variance of every block, and `sampling` picks the images a measurement looks at, across
every class.

May import: `resnet_core.common` and `resnet_core.nets`.
"""
