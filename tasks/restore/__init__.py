"""Restoring from archive tiers: inventory, requests, polling, pricing and plate unpacking as
plain steps, and thin Prefect tasks over them (``tasks``)."""
