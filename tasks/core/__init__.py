"""The shared core every flow family builds on: clients, errors, retry policy, the sensor,
bounded concurrency, per-item locks, memory settings, statuses and logging."""
