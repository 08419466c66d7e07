"""Host-side training of the policy GAT: synthetic-MDP prior, dataset generation, training."""
