"""Seeds of the networks ddtool trains before a distillation: one stream per role.

Evaluation trains repeat r from ``torch.manual_seed(eval.seed + r)``. Pools and expert
trajectories used to start model i from ``pretrain.seed + i`` as well, so with both seeds at their
default 0, evaluation repeat r started from exactly the initial weights of pool model r or expert r:
the very network a set was matched on. MTT trains its images to steer a student from an expert's
start, so that repeat scored far above the others (CIFAR-10 ipc 1: 43.2 % against about 36.6 %;
issue 12). Pretraining now takes its seeds from a stream of its own, hashed from the role, the
recipe's seed and the model's index; evaluation keeps ``seed + r``, so every recorded evaluation
stays reproducible.
"""

from __future__ import annotations

import hashlib


def role_seed(role: str, seed: int, index: int) -> int:
    """A seed for network ``index`` of ``role`` ("pool", "expert") under the recipe's ``seed``: a
    31-bit hash, the same on every machine and world size, and not a small integer like the
    evaluation's ``seed + r``."""
    digest = hashlib.sha256(f"ddtool:{role}:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFF_FFFF
