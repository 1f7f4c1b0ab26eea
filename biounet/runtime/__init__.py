"""The process biounet runs in: devices and cores (`devices`), memory allocator (`process`),
the machine (`machine`), and the warnings a run gives (`notices`)."""
