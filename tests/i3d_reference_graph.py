"""A SavedModel laid out as the TF-Hub module ``deepmind/i3d-kinetics-400/1`` with random weights, for the parity
tests of the PyTorch port.

Written independently of ``ctbench.extractors.i3d_net``, in TensorFlow-1 graph style as DeepMind's Sonnet code
builds it: variables ``RGB/inception_i3d/<layer>/conv_3d/w`` (+ ``/b`` for the logits), ``.../batch_norm/beta``,
``moving_mean``, ``moving_variance`` (shape ``(1, 1, 1, 1, C)``, no scale), ``tf.nn.conv3d`` and
``tf.nn.max_pool3d`` with ``"SAME"`` padding, ``tf.nn.batch_normalization`` with eps 1e-3, a 2×7×7 ``"VALID"``
average pool, logits squeezed and averaged over time into the ``default`` output, and the one odd name
``Mixed_5b/Branch_2/Conv3d_0a_3x3``. Saved as a TF1 SavedModel with an empty tag set and a ``default`` signature
whose input and output are both called ``default`` (how TF-Hub's TF1 module format serves it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BLOCKS = [
    ("Mixed_3b", [64, 96, 128, 16, 32, 32]),
    ("Mixed_3c", [128, 128, 192, 32, 96, 64]),
    ("MaxPool3d_4a_3x3", ([1, 3, 3, 3, 1], [1, 2, 2, 2, 1])),
    ("Mixed_4b", [192, 96, 208, 16, 48, 64]),
    ("Mixed_4c", [160, 112, 224, 24, 64, 64]),
    ("Mixed_4d", [128, 128, 256, 24, 64, 64]),
    ("Mixed_4e", [112, 144, 288, 32, 64, 64]),
    ("Mixed_4f", [256, 160, 320, 32, 128, 128]),
    ("MaxPool3d_5a_2x2", ([1, 2, 2, 2, 1], [1, 2, 2, 2, 1])),
    ("Mixed_5b", [256, 160, 320, 32, 128, 128]),
    ("Mixed_5c", [384, 192, 384, 48, 128, 128]),
]


def save_random_i3d(path: Path, seed: int = 0, drop: tuple[str, ...] = ()) -> Path:
    """Save the random-weight module at ``path``; variables whose name contains any of ``drop`` are left out (a
    module that is not quite I3D)."""
    from ctbench.extractors.i3d import import_tensorflow

    tf = import_tensorflow()[0]
    v1 = tf.compat.v1
    rng = np.random.default_rng(seed)

    def variable(name, value):
        return v1.get_variable(name, initializer=value.astype(np.float32))

    def unit(x, name, cout, kernel=(1, 1, 1), stride=(1, 1, 1), head=False):
        cin = int(x.shape[-1])
        fan_in = cin * int(np.prod(kernel))
        with v1.variable_scope(name):
            w = variable("conv_3d/w", rng.normal(0, np.sqrt(2 / fan_in), (*kernel, cin, cout)))
            x = tf.nn.conv3d(x, w, strides=[1, *stride, 1], padding="SAME")
            if head:
                return x + variable("conv_3d/b", rng.normal(0, 0.1, cout))
            if any(d in f"{v1.get_variable_scope().name}/batch_norm" for d in drop):
                return tf.nn.relu(x)
            shape = (1, 1, 1, 1, cout)
            beta = variable("batch_norm/beta", rng.normal(0, 0.05, shape))
            mean = variable("batch_norm/moving_mean", rng.normal(0, 0.05, shape))
            var = variable("batch_norm/moving_variance", rng.uniform(0.5, 2.0, shape))
            return tf.nn.relu(tf.nn.batch_normalization(x, mean, var, beta, None, 1e-3))

    def max_pool(x, ksize, strides):
        return tf.nn.max_pool3d(x, ksize=ksize, strides=strides, padding="SAME")

    def mixed(x, name, widths):
        b0, b1a, b1b, b2a, b2b, b3 = widths
        with v1.variable_scope(name):
            branch0 = unit(x, "Branch_0/Conv3d_0a_1x1", b0)
            branch1 = unit(unit(x, "Branch_1/Conv3d_0a_1x1", b1a), "Branch_1/Conv3d_0b_3x3", b1b, (3, 3, 3))
            second = "Conv3d_0a_3x3" if name == "Mixed_5b" else "Conv3d_0b_3x3"  # DeepMind's spelling
            branch2 = unit(unit(x, "Branch_2/Conv3d_0a_1x1", b2a), f"Branch_2/{second}", b2b, (3, 3, 3))
            pooled = max_pool(x, [1, 3, 3, 3, 1], [1, 1, 1, 1, 1])
            branch3 = unit(pooled, "Branch_3/Conv3d_0b_1x1", b3)
            return tf.concat([branch0, branch1, branch2, branch3], 4)

    graph = tf.Graph()
    with graph.as_default():
        video = v1.placeholder(tf.float32, [None, None, None, None, 3], name="video")
        with v1.variable_scope("RGB/inception_i3d"):
            x = unit(video, "Conv3d_1a_7x7", 64, (7, 7, 7), (2, 2, 2))
            x = max_pool(x, [1, 1, 3, 3, 1], [1, 1, 2, 2, 1])
            x = unit(x, "Conv3d_2b_1x1", 64)
            x = unit(x, "Conv3d_2c_3x3", 192, (3, 3, 3))
            x = max_pool(x, [1, 1, 3, 3, 1], [1, 1, 2, 2, 1])
            for name, spec in BLOCKS:
                x = max_pool(x, *spec) if name.startswith("MaxPool") else mixed(x, name, spec)
            x = tf.nn.avg_pool3d(x, ksize=[1, 2, 7, 7, 1], strides=[1, 1, 1, 1, 1], padding="VALID")
            logits = tf.squeeze(unit(x, "Logits/Conv3d_0c_1x1", 400, head=True), [2, 3])
            averaged = tf.reduce_mean(logits, axis=1)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            signature = v1.saved_model.predict_signature_def({"default": video}, {"default": averaged})
            builder.add_meta_graph_and_variables(sess, [], signature_def_map={"default": signature})
            builder.save()
    return path
