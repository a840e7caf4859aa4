"""What both plate flows share: a plate's settings, resolved keys and scratch folder."""
