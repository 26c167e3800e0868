"""ctbench's reference generator plugins, installed as ``ctbench_generators``: the baselines and ``vqgan-ddpm``."""
