"""coldflow's steps and tasks: one package per flow family over a shared core.

``core``     clients, errors, retry policy, sensor, concurrency, locks, memory, statuses
``formats``  layouts, listings, ledgers, checksums, tarballs, compression, plates.csv
``plates``   what both plate flows share: a plate's settings, keys and scratch
``archive``  the plate archive steps and their tasks
``restore``  inventory, requests, polling, pricing, plate unpacking and their tasks
"""
