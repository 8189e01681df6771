"""The file suffixes of the formats (lower case), each written once.

The registry builds :data:`~napari_imc_vae.io._registry.FORMATS` from these and derives
``FILE_SUFFIXES`` / ``FOLDER_SUFFIXES`` from them; code outside ``io`` (the napari reader,
the command line, the manifest test) asks the registry. Only the modules the registry itself
imports (``image``, ``tiff``, ``panel``) read this one directly.
"""

OME_TIFF = (".ome.tiff", ".ome.tif")
TIFF = (".tiff", ".tif")
MCD = (".mcd",)
TXT = (".txt",)

#: Every file suffix, longest first: the first one a file name ends with is its format's.
ALL = tuple(sorted(OME_TIFF + TIFF + MCD + TXT, key=len, reverse=True))
