"""RGMC odd-one-out weight λ_o, training FGSM ε, clean share, perturbation source and two-phase
training vs clean and worst-modality accuracy.

    python sweeps/rgmc_settings.py --smoke                      # laptop, a few minutes
    python sweeps/rgmc_settings.py --num-samples 64 --gpu 0.25  # four trials per GPU
    ray submit infra/cluster.yaml sweeps/rgmc_settings.py -- --address auto --dataset mhd --data-dir /data/mhd

Starts a private Ray on 127.0.0.1 unless told which cluster to join: --address (--address auto
for one started on this machine with `ray start`), or RAY_ADDRESS, which `ray job submit` sets. The space is
search_spaces/rgmc_settings.yaml; every flag is in --help.
"""

import sys

from robustmm.tune.command import main

if __name__ == "__main__":
    sys.exit(main("rgmc_settings.yaml", sys.argv[1:], script=__file__, doc=__doc__))
