"""placeholder while being written"""
def trace_shapes(*a, **k): raise NotImplementedError
def trace_blocks(*a, **k): raise NotImplementedError
