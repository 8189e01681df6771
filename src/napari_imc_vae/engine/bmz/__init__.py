"""BioImage Model Zoo packages: export (:mod:`.export`, :mod:`.arch`, :mod:`.docs`) and load (:mod:`.load`).

:mod:`.arch` imports only torch: its text goes into the package beside :mod:`..model.vae`'s.
"""
