"""Write a precomputed-feature data set in the `npz` format for the CRMT benchmark.

Kinetics-Sounds cannot be downloaded here, so this stands in for its audio/visual embeddings:
two feature vectors per sample with a MODALITY PREFERENCE, the situation CRMT is about. "audio"
(32-d, strong prototypes) carries most of the class signal in few dimensions, so its classes lie
close together in L2 after scaling: the preferred but vulnerable modality; "visual" (512-d, weak
per dimension, a fifth of its samples showing a wrong class) is less reliable but spread out.
Each class has a random prototype per modality; a
sample is its class prototype times a signal scale plus isotropic Gaussian noise, and a share of
samples carries a wrong-class visual prototype (visual is unreliable for them), and another share
is ambiguous: both modalities show another class than the label, so no model gets them right
(clean accuracy stays below 100 % while the other samples have margins an L2 attack must
overcome). Deterministic by --seed. The files go through the same loader and min-max scaling as any user's npz files.

    python bench/crmt_features.py --out runs/crmt_features/data
    robustmm report --models jt,ojt,crmt-jt,crmt-at,crmt-mix --dataset npz \\
        --data-dir runs/crmt_features/data --grid crmt --seeds 0-2 --out runs/crmt_features
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make_split(rng: np.random.Generator, protos: dict[str, np.ndarray], n: int, args: argparse.Namespace) -> dict:
    k = len(protos["audio"])
    y = rng.integers(0, k, n)
    ambiguous = rng.random(n) < args.ambiguous
    y_shown = np.where(ambiguous, (y + rng.integers(1, k, n)) % k, y)
    audio = args.audio_signal * protos["audio"][y_shown] + rng.normal(size=(n, protos["audio"].shape[1]))
    wrong = rng.random(n) < args.visual_confusion
    y_visual = np.where(wrong, (y_shown + rng.integers(1, k, n)) % k, y_shown)
    visual = args.visual_signal * protos["visual"][y_visual] + rng.normal(size=(n, protos["visual"].shape[1]))
    return {"label": y.astype(np.int64), "audio": audio.astype(np.float32), "visual": visual.astype(np.float32)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for train.npz and test.npz")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--audio-dim", type=int, default=32)
    p.add_argument("--visual-dim", type=int, default=512)
    p.add_argument("--audio-signal", type=float, default=3.0, help="prototype scale of audio (noise std 1)")
    p.add_argument("--visual-signal", type=float, default=0.5, help="prototype scale of visual")
    p.add_argument("--visual-confusion", type=float, default=0.2, help="share of samples with a wrong visual class")
    p.add_argument("--ambiguous", type=float, default=0.25, help="share of samples showing another class")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    protos = {
        "audio": rng.normal(size=(args.classes, args.audio_dim)),
        "visual": rng.normal(size=(args.classes, args.visual_dim)),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", args.n_train), ("test", args.n_test)):
        np.savez(out / f"{name}.npz", **make_split(rng, protos, n, args))
    print(f"wrote {out / 'train.npz'} ({args.n_train}) and {out / 'test.npz'} ({args.n_test})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
