"""The Python side of coldflow's deployments: serving every flow, and `make ui`'s bootstrap."""
