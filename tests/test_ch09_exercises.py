"""Autograder test for the exercise of chapter 9, The Bid Picture (see tests/exercise_utils.py)."""

import torch
from torch import nn
from torch.testing import assert_close

from exercise_utils import load_exercise
from ganlib.training.auction import bid_matrix_from_logits, cross_scores, select_winner


class Affine(nn.Module):
    """A 'discriminator' with a known output: logit = a . x + b."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = torch.tensor(a), torch.tensor(b)

    def forward(self, x):
        return x @ self.a + self.b


def test_ch09_auction_by_hand():
    f = load_exercise("09_bid_picture")["auction_by_hand"]
    # hand example: D0 says logit 0 everywhere (bids 0.5); D1 and D2 say x_0 and 2 x_0
    ds = [Affine([0.0, 0.0], 0.0), Affine([1.0, 0.0], 0.0), Affine([2.0, 0.0], 0.0)]
    lots = torch.tensor([[[2.0, 0.0], [2.0, 1.0]],       # lot of G0: x_0 = 2
                         [[0.0, 0.0], [0.0, 3.0]],       # lot of G1: x_0 = 0
                         [[-1.0, 0.0], [-1.0, 0.0]]])    # lot of G2: x_0 = -1
    B, S, w = f(ds, lots)
    s = lambda v: torch.sigmoid(torch.tensor(v)).item()
    expected = torch.tensor([[0.5, s(2.0), s(4.0)],
                             [0.5, 0.5, 0.5],
                             [0.5, s(-1.0), s(-2.0)]])
    assert_close(B.float(), expected)
    # S excludes the own partner: S(0) = (B01 + B02) / 2, S(1) = (B10 + B12) / 2, S(2) = (B20 + B21) / 2
    assert_close(S.float(), torch.tensor([(s(2.0) + s(4.0)) / 2, 0.5, (0.5 + s(-1.0)) / 2]))
    assert w == 0 and isinstance(w, int)
    # ties go to the lowest index: constant discriminators bid 0.5 on everything
    _, S_tie, w_tie = f([Affine([0.0, 0.0], 0.0)] * 3, lots)
    assert_close(S_tie.float(), torch.full((3,), 0.5))
    assert w_tie == 0

    # random players: agrees with ganlib's pieces, and ignores the diagonal
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1), nn.Flatten(0)) for _ in range(4)]
    lots = torch.randn(4, 16, 2)
    B, S, w = f(nets, lots)
    with torch.no_grad():
        logits = torch.stack([torch.stack([d(lots[i]) for i in range(4)]) for d in nets])  # [bidder, lot, L]
    ref = bid_matrix_from_logits(logits, score="prob")
    assert_close(B.float(), ref)
    assert_close(S.float(), cross_scores(ref))
    assert w == select_winner(cross_scores(ref)).item()
    # a partner that adores its own generator's lot changes nothing in S
    nets[2] = _Adores(nets[2], lots[2])
    B2, S2, _ = f(nets, lots)
    assert B2[2, 2] > 0.99
    assert_close(S2.float(), S.float())


class _Adores(nn.Module):
    """A discriminator that gives a huge logit to exactly one lot (only the diagonal entry moves)."""

    def __init__(self, net, lot):
        super().__init__()
        self.net, self.lot = net, lot

    def forward(self, x):
        out = self.net(x)
        return out + 100.0 if x.shape == self.lot.shape and torch.equal(x, self.lot) else out
