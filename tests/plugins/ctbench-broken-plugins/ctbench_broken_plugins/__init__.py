"""Generator plugins that break ctbench's plugin contract, each in one way (see ``plugins.py``)."""
