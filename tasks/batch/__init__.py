"""Very large restores through S3 Batch Operations: manifests, jobs, completion reports."""
