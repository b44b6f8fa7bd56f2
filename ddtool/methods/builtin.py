"""Registers the built-in matching methods through the public hook."""

from __future__ import annotations

from ddtool.hookspecs import RegisterMethod, hookimpl
from ddtool.methods.coreset import Herding, RandomReal
from ddtool.methods.dm import DM
from ddtool.methods.dc import DC, DSA
from ddtool.methods.dream import DREAM
from ddtool.methods.idc import IDC
from ddtool.methods.datm import DATM
from ddtool.methods.mtt import MTT
from ddtool.methods.ncfm import NCFM


@hookimpl
def ddtool_register_matching_methods(register: RegisterMethod) -> None:
    register(DM())
    register(RandomReal(), aliases=("random-real",))
    register(DC())
    register(DSA())
    register(IDC())
    register(Herding())
    register(MTT())
    register(DATM())
    register(DREAM(), aliases=("dream+", "dreamplus"))
    register(NCFM())
