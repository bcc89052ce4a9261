"""A person's own recorded sequences: reading files of them (CSV, TSV, Parquet, NPZ, .ts), padding and length buckets."""
