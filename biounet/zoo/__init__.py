"""bioimage.io (BioImage Model Zoo) packages written from biounet models (`export`, `arch`)."""
