"""Formats coldflow reads and writes: layouts, listings, ledgers, checksums, tarballs,
compression and plates.csv. Plain code, no S3 calls."""
