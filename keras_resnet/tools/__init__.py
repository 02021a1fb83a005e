"""Tools that measure the library rather than being part of it, each run as
``python -m keras_resnet.tools.NAME``: the zoo's, the trainer's and the exporter's
benchmarks (``zoo_benchmark``, ``training_benchmark``, ``export_benchmark``), the int8
schemes side by side (``int8_schemes``), float, post-training and quantization-aware int8 side by side (``int8_study``) and runs
on emulated CPUs (``emulation``: an AVX2 x86 without VNNI; ``arm64``: a 64-bit ARM board).
Nothing in the library imports them, and none imports TensorFlow itself (the training
step's roofline, which reads oneDNN, is ``keras_resnet.training.tools.roofline``).
"""
