"""Network architectures and the factory that builds them by name."""

from ddtool.nets.factory import NetSpec, build_net, check_net

__all__ = ["NetSpec", "build_net", "check_net"]
