"""Tools that measure the TensorFlow trainer rather than being part of it, each run as
``python -m keras_resnet.training.tools.NAME``: the training step's roofline (``roofline``,
oneDNN's own primitive timings). Nothing in the library imports them.
"""
