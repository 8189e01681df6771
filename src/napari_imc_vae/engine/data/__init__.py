"""Patches for training: in RAM, or a disk cache and a bounded pool for cohorts larger than RAM.

- :mod:`.patches`: images packed on the device, sampled by gather, validation split by region;
- :mod:`.cohort`: images read one at a time, the disk cache and the one in-RAM-or-not rule;
- :mod:`.pool`: a bounded pool of tiles refilled from the cache.
"""
