"""Incremental bucket backups: listings merged as streams, server-side copies that carry
metadata and tags, deletions tagged instead of deleted, restores into a fresh bucket."""
