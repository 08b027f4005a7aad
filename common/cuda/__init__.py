"""The CUDA-graph path: capturable matrix products and captured steps."""
