"""Thawing S3 Glacier vault archives into S3: tree hashes, retrieval jobs, streamed copies
verified chunk by chunk, and the delete that only follows a verified copy."""
