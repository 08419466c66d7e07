"""rlfm-edge: a reinforcement-learning foundation model for robots.

A graph attention network reads an MDP's count statistics and outputs a policy in
context. This package holds the runtime: MDP types, benchmarks, statistics, baselines,
inference backends, the online agent, the serial link and the CLI.
"""

__version__ = "0.1.0"
