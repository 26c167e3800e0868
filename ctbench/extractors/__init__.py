"""Feature networks with pinned weights and their exact preprocessing.

* :mod:`ctbench.extractors.slicing`: quantisation to uint8 and the three slice planes of a volume.
* :mod:`ctbench.extractors.inception`: InceptionV3 pool3 features (torch-fidelity's TF-compatible network).
* :mod:`ctbench.extractors.i3d`: FVD's preprocessing, and I3D logits through the TF-Hub module (TensorFlow imported
  lazily; the reference).
* :mod:`ctbench.extractors.i3d_net`, :mod:`~ctbench.extractors.i3d_torch`: the same logits from a PyTorch port of the
  module, with weights converted once by :mod:`ctbench.extractors.i3d_convert`.
"""
