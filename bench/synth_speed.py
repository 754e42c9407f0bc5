"""How long synth-mhd takes for an MHD-sized data set on ONE thread.

60 000 samples (50 000 train + 10 000 test, image + trajectory + sound), the size of the real
MHD release. Prints two numbers: generation alone (in memory), and end to end (generate, write
both files in the MHD format into a temp dir, read them back through the real MHD loader and
normalise), which is what a first `load_dataset("synth-mhd", ...)` costs.

    python bench/synth_speed.py            # with the package installed (or PYTHONPATH=.)
    python bench/synth_speed.py --difficulty 0.5
"""

from __future__ import annotations

import os

# one thread for every math library, set before numpy/torch load them
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from robustmm.data import load_dataset, synth_mhd  # noqa: E402

N_TRAIN, N_TEST = 50_000, 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--difficulty", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    synth_mhd.generate(100, seed=0, split="train", difficulty=args.difficulty)  # build lookup tables

    t0 = time.perf_counter()
    synth_mhd.generate(N_TRAIN, seed=0, split="train", difficulty=args.difficulty)
    synth_mhd.generate(N_TEST, seed=0, split="test", difficulty=args.difficulty)
    generate_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ds = load_dataset(
            "synth-mhd",
            data_dir=tmp,
            options={
                "n_train": N_TRAIN,
                "n_test": N_TEST,
                "difficulty": args.difficulty,
                "modalities": ("image", "trajectory", "sound"),
            },
        )
        total_s = time.perf_counter() - t0
        size_mb = sum(f.stat().st_size for f in os.scandir(tmp)) / 2**20
    assert len(ds.train) == N_TRAIN and len(ds.test) == N_TEST
    print(f"synth-mhd, {N_TRAIN + N_TEST} samples (image+trajectory+sound), 1 thread, difficulty {args.difficulty:g}")
    print(f"generate only:                        {generate_s:6.1f} s")
    print(f"generate + write ({size_mb:.0f} MiB) + load:   {total_s:6.1f} s")


if __name__ == "__main__":
    main()
