"""Train the digits classifier shipped in ganlib/metrics/weights (CPU, well under a minute).

    python scripts/train_digits_classifier.py            # writes the .safetensors + .json

Seeded and single-threaded, on a fixed stratified split of scikit-learn's 1,797 digits
(1,400 train / 397 test). Augmentation: random shifts of up to 1 pixel in each direction
(background-filled), so the features do not hinge on exact pixel positions. The JSON
records the test accuracy, the test indices, the command and the weights' sha256, which
``ganlib.metrics.digits.load_digits_classifier`` checks. Re-running reproduces the run;
bitwise-identical weights are only expected with the same torch build and CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ganlib.data.images import load_digits
from ganlib.metrics.digits import WEIGHTS_PATH, DigitsClassifier, digits_split


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Shift each image by a random integer offset in ``[-max_shift, max_shift]^2`` (fill -1)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    off = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    rows = off[:, :1] + torch.arange(h)                     # [n, h]
    cols = off[:, 1:] + torch.arange(w)                     # [n, w]
    return padded[torch.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-test", type=int, default=397)
    ap.add_argument("--out", type=Path, default=WEIGHTS_PATH, help="output .safetensors (JSON beside it)")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    images, labels = load_digits()
    train_idx, test_idx = digits_split(labels, n_test=args.n_test, seed=args.seed)
    x_tr, y_tr, x_te, y_te = images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]

    g = torch.Generator().manual_seed(args.seed)
    model = DigitsClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = -(-len(x_tr) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=g)
        for s in range(0, len(x_tr), args.batch_size):
            idx = perm[s:s + args.batch_size]
            loss = F.cross_entropy(model(random_shift(x_tr[idx], g)), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  test acc {accuracy(model, x_te, y_te):.4f}")

    train_acc, test_acc = accuracy(model, x_tr, y_tr), accuracy(model, x_te, y_te)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out), metadata={"architecture": "ganlib.metrics.digits.DigitsClassifier"})
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    info = {
        "sha256": digest,
        "test_accuracy": round(test_acc, 6),
        "train_accuracy": round(train_acc, 6),
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "data": "sklearn.datasets.load_digits (1,797 8x8 images) via ganlib.data.images.load_digits, "
                "stratified split ganlib.metrics.digits.digits_split",
        "test_indices": test_idx.tolist(),
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "augmentation": "random integer shift in [-1, 1]^2 pixels, background fill -1",
        "command": " ".join(["python scripts/train_digits_classifier.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "torch_version": torch.__version__,
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    text = json.dumps({**info, "test_indices": "@@"}, indent=1)      # keep the index list on one line
    out.with_suffix(".json").write_text(text.replace('"@@"', json.dumps(info["test_indices"])) + "\n")
    print(f"test accuracy {test_acc:.4f} (train {train_acc:.4f}); wrote {out} "
          f"({out.stat().st_size / 1024:.0f} KiB, sha256 {digest[:12]}...) in {info['train_seconds']} s")


if __name__ == "__main__":
    main()
