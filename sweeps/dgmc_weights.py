"""DGMC reconstruction weights λ_m, training noise σ and clean share vs clean and worst-modality PGD accuracy.

    python sweeps/dgmc_weights.py --smoke                      # laptop, a few minutes
    python sweeps/dgmc_weights.py --num-samples 64 --gpu 0.25  # four trials per GPU
    ray submit infra/cluster.yaml sweeps/dgmc_weights.py -- --address auto --dataset mhd --data-dir /data/mhd

Starts a private Ray on 127.0.0.1 unless told which cluster to join: --address (--address auto
for one started on this machine with `ray start`), or RAY_ADDRESS, which `ray job submit` sets. The space is
search_spaces/dgmc_weights.yaml; every flag is in --help.
"""

import sys

from robustmm.tune.command import main

if __name__ == "__main__":
    sys.exit(main("dgmc_weights.yaml", sys.argv[1:], script=__file__, doc=__doc__))
