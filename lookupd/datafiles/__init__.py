"""Data files: format readers, merging, snapshots, the embedded data and data versions."""
