"""Foundations shared by every layer of ctbench: nothing here knows about CT, metrics or generators.

* :mod:`~ctbench.core.errors`: the base of user-facing errors, and :class:`MetricUnavailable`.
* :mod:`~ctbench.core.hashing`: sha256 of canonical JSON, of a file and of a folder.
* :mod:`~ctbench.core.atomic`: writes that leave either the old file or the new one, never half of one.
* :mod:`~ctbench.core.cache`: the cache root and ``.npz`` caches keyed by the sha256 of their inputs.
* :mod:`~ctbench.core.distributed`: rank and world size, joining a ``torchrun`` group, gathering, sharding.
* :mod:`~ctbench.core.progress`: progress bars that show on a terminal only.
* :mod:`~ctbench.core.environment`: provenance of a run (interpreter, libraries, device, source revision).

Modules here import nothing from ctbench outside ``ctbench.core`` (the package version aside), so every
other module may import them without creating an upward dependency.
"""
