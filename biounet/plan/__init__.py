"""Planning a run: every argument checked, output blocks and tiles (pure geometry), output
layout and names, memory and GPU choices."""
