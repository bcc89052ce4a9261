"""What a person looks at: the figures of a run, and the look inside a network (states, gates, probes)."""
