"""bench.convergence's reading of a curve: the first iteration at the target, not the best one."""

from bench.convergence import first_reaching
from ddtool.runtime.evaluate.accuracy_curves import CurvePoint


def _point(iteration: int, accs: list[float], seconds: float) -> CurvePoint:
    return CurvePoint(iteration, seconds, f"d{iteration}", accs)


def test_first_reaching_takes_the_earliest_iteration_at_or_above_the_target() -> None:
    # given out of order, with a later dip below the target: the earliest crossing counts
    points = [_point(40, [0.70, 0.72], 4.0), _point(0, [0.30, 0.32], 0.0), _point(20, [0.60, 0.62], 2.0),
              _point(60, [0.50, 0.52], 6.0)]
    hit = first_reaching(points, 0.61)
    assert (hit.iteration, hit.seconds) == (20, 2.0)
    assert abs(hit.accuracy - 0.61) < 1e-9  # the mean of the repeats, exactly at the target
    assert first_reaching(points, 0.7101).iteration is None
    assert first_reaching(points, 0.71).iteration == 40
