"""Reading slides lazily (`image`), samples of their pixels (`sample`), and folders of
annotated images (`files`)."""
