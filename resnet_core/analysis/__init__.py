"""Analysis: measurements of one net, trained or not. `trace` follows every tensor shape
through a net, `probes` measures per-layer gradient norms and layer responses, `measure`
runs those probes the way the gradient page shows them.

May import: `resnet_core.common` and `resnet_core.nets`.
"""
