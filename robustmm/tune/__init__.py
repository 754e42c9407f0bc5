"""Hyperparameter sweeps: Ray Tune + Optuna search, and the Pareto fronts of their results."""
