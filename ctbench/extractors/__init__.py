"""Feature networks with pinned weights and their exact preprocessing.

* :mod:`ctbench.extractors.slicing`: quantisation to uint8 and the three slice planes of a volume.
* :mod:`ctbench.extractors.inception`: InceptionV3 pool3 features (torch-fidelity's TF-compatible network).
* :mod:`ctbench.extractors.i3d`: I3D logits of a volume seen as a video (TF-Hub module, TensorFlow imported lazily).
"""
