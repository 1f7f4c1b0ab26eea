"""Instances from a class map, block by block: pass 1, merge, pass 2 (see each module)."""
