"""DGMC reconstruction weights λ_m, training noise σ and clean share vs clean and worst-modality PGD accuracy.

    python sweeps/dgmc_weights.py --smoke                      # laptop, a few minutes
    python sweeps/dgmc_weights.py --num-samples 64 --gpu 0.25  # four trials per GPU
    ray submit infra/cluster.yaml sweeps/dgmc_weights.py -- --dataset mhd --data-dir /data/mhd

Joins a running Ray cluster when there is one, starts a local one otherwise. The space is
search_spaces/dgmc_weights.yaml; every flag is in --help.
"""

import sys

from robustmm.tune.command import main

if __name__ == "__main__":
    sys.exit(main("dgmc_weights.yaml", sys.argv[1:], script=__file__, doc=__doc__))
