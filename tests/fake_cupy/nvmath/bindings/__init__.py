"""The stand-in nvmath's low-level bindings: :mod:`nvmath.bindings.cublas`."""
