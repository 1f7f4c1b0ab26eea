"""Per-object measurements of the instances (the object table)."""
