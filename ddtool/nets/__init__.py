"""Network architectures: the contract, the built-in ones, and building a resolved one."""

from ddtool.nets.factory import NetSpec, build_architecture

__all__ = ["NetSpec", "build_architecture"]
