"""Multi-process (torchrun) runs: the process group, each rank's device and its collectives."""
