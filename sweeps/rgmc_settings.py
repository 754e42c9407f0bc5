"""RGMC odd-one-out weight λ_o, training FGSM ε, clean share, perturbation source and two-phase
training vs clean and worst-modality accuracy.

    python sweeps/rgmc_settings.py --smoke                      # laptop, a few minutes
    python sweeps/rgmc_settings.py --num-samples 64 --gpu 0.25  # four trials per GPU
    ray submit infra/cluster.yaml sweeps/rgmc_settings.py -- --dataset mhd --data-dir /data/mhd

Joins a running Ray cluster when there is one, starts a local one otherwise. The space is
search_spaces/rgmc_settings.yaml; every flag is in --help.
"""

import sys

from robustmm.tune.command import main

if __name__ == "__main__":
    sys.exit(main("rgmc_settings.yaml", sys.argv[1:], script=__file__, doc=__doc__))
