"""biounet's napari plugin (npe2 manifest `napari.yaml`, entry point `napari.manifest`).

- reader (`biounet.napari.reader`): a biounet output, or any OME-Zarr image
  with NGFF labels, as an image layer and visible labels layers;
- widget "Segment (biounet)" (`biounet.napari.widget`);
- `biounet view OUTPUT` (`biounet.napari.view`).

Choosing the reader: napari offers a folder (an OME-Zarr is one) to every
installed reader that accepts folders; filename patterns only apply to files,
and a plugin cannot rank itself above others. `napari slide.ome.zarr` then asks
which reader to use unless a preference matches the folder
(`napari.settings.get_settings().plugins.extension2reader`, patterns matched
against the folder's absolute path plus a trailing "/"). The reader dialog's
"remember" box stores the exact folder only, so `remember_reader()` stores the
pattern "*.ome.zarr/" instead (`biounet view --remember-reader`).
"""

from __future__ import annotations

PLUGIN = "biounet"
FOLDER_PATTERN = "*.ome.zarr/"


def remember_reader(pattern: str = FOLDER_PATTERN) -> dict[str, str]:
    """Make napari open folders matching `pattern` with biounet's reader (saved in
    napari's settings file); returns the reader preferences now in effect."""
    from napari.settings import get_settings

    plugins = get_settings().plugins
    plugins.extension2reader = {**plugins.extension2reader, pattern: PLUGIN}
    return dict(plugins.extension2reader)
