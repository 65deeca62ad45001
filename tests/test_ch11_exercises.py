"""Autograder tests for the exercises of chapter 11 (phased augmentation; see tests/exercise_utils.py)."""

import torch

from exercise_utils import load_exercise
from ganlib.data import AugmentPhase, PhasedAugmentation
from ganlib.models.pixelcnn import raster_mask


def test_ch11_causal_mask():
    f = load_exercise("11_phased_augmentation")["causal_mask"]
    assert f(1, "A").tolist() == [[0.0]]
    assert f(1, "B").tolist() == [[1.0]]
    assert f(3, "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert f(3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    # 5x5 B: 10 ones above, 2 left of the centre, the centre: 13
    m5 = f(5, "B")
    assert m5.shape == (5, 5) and int(m5.sum()) == 13 and m5[2, 2] == 1 and m5[2, 3] == 0
    for k in (5, 7):
        for t in ("A", "B"):
            assert torch.equal(f(k, t).float(), raster_mask(k, t))


def test_ch11_phase_at():
    f = load_exercise("11_phased_augmentation")["phase_at"]
    # 20 steps, boundaries 0.45 and 0.9: phase 1 starts at round(9.0) = 9, phase 2 at 18
    assert [f(s, 20, [0.45, 0.9]) for s in range(20)] == [0] * 9 + [1] * 9 + [2] * 2
    # round half up: 0.25 * 10 = 2.5 -> phase 1 starts at step 3
    assert [f(s, 10, [0.25]) for s in range(10)] == [0, 0, 0] + [1] * 7
    assert f(0, 5, []) == 0 and f(4, 5, []) == 0
    sched = PhasedAugmentation([AugmentPhase(10), AugmentPhase(5), AugmentPhase(2), AugmentPhase()], [0.1, 0.35, 0.8])
    for total in (3, 11, 250):
        expected = [sched.phase_index(s, total) for s in range(total)]
        assert [f(s, total, sched.boundaries) for s in range(total)] == expected
