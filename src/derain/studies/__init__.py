"""Studies of the network: the ablation study, a look inside a trained network, cost profiles, scaling sweeps."""
