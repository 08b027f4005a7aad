"""Framework-wide switches.

``GPU`` chooses the array backend: NumPy when false, CuPy when true. It is read
once, by the first ``import common.np``; set it before importing any layer::

    from common import config
    config.GPU = True          # or run with DLFS_GPU=1 in the environment

Changing it after the backend has been chosen has no effect (``common.np``
raises if the two disagree, so a late switch is never silently ignored).
"""
import os

_TRUE = ('1', 'true', 'yes', 'on')

#: Run on CUDA through CuPy. Defaults to the environment variable DLFS_GPU.
GPU = os.environ.get('DLFS_GPU', '').strip().lower() in _TRUE

#: On CuPy, sum repeated ids of the embedding gradient in a fixed order (a
#: product with a one-hot matrix of the batch's distinct ids) instead of
#: ``cupy.add.at``'s float atomic adds, whose order varies from run to run.
#: Costs an (ids in the batch) x (distinct ids) matrix. Read at the first
#: ``import common.np``, like GPU; defaults to the environment variable
#: DLFS_DETERMINISTIC. The NumPy path is deterministic either way.
DETERMINISTIC = os.environ.get('DLFS_DETERMINISTIC', '').strip().lower() in _TRUE

#: On CuPy, run each training and evaluation step as one CUDA graph
#: (common/cuda/graph.py) where it applies; False runs every kernel and
#: product from Python, one launch at a time (``--no-cuda-graph``). Read when a
#: trainer is made; defaults to on unless the environment variable
#: DLFS_CUDA_GRAPH is 0/false/no/off.
CUDA_GRAPH = os.environ.get('DLFS_CUDA_GRAPH', '1').strip().lower() not in ('0', 'false', 'no', 'off')

#: On the CUDA-graph path, let cuBLAS multiply float32 in TF32 (10-bit
#: mantissa inputs, float32 sums) on GPUs that have it: faster products, some
#: 1e-3 relative error per product. Off by default (full float32, as NumPy);
#: ``--tf32`` or the environment variable DLFS_TF32 turns it on.
TF32 = os.environ.get('DLFS_TF32', '').strip().lower() in _TRUE
