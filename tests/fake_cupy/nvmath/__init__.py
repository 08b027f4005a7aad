"""A stand-in for nvmath-python: only ``nvmath.bindings.cublas``, on the stand-in CuPy."""
