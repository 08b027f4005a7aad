"""Data-parallel runs: the processes and their collectives, and the steps K processes add to the loop."""
