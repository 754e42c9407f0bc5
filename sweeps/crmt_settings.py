"""CRMT margin weight ρ, step-2 rate and epochs, rounds, and the step-1 data (plain, joint L2-PGD
at ε, mixup at α) vs clean and worst-modality L2-PGD accuracy.

    python sweeps/crmt_settings.py --smoke                      # laptop, a few minutes
    python sweeps/crmt_settings.py --num-samples 64 --gpu 0.25  # four trials per GPU
    python sweeps/crmt_settings.py --dataset npz --data-dir /data/ks_features   # precomputed features
    ray submit infra/cluster.yaml sweeps/crmt_settings.py -- --address auto --dataset mhd --data-dir /data/mhd

Starts a private Ray on 127.0.0.1 unless told which cluster to join: --address (--address auto
for one started on this machine with `ray start`), or RAY_ADDRESS, which `ray job submit` sets. The space is
search_spaces/crmt_settings.yaml; every flag is in --help.
"""

import sys

from robustmm.tune.command import main

if __name__ == "__main__":
    sys.exit(main("crmt_settings.yaml", sys.argv[1:], script=__file__, doc=__doc__))
