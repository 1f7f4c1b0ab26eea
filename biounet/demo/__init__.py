"""`make demo` (`python -m biounet.demo`): the sample mosaic (`mosaic`) segmented with the
shipped nuclei model."""
