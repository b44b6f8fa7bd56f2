"""Train what a distillation starts from: model pools and expert trajectories."""
