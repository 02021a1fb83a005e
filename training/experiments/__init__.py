"""``keras-resnet-experiment``: the paper's experiments as lists of ordinary trainer runs.

* ``plan``: which runs an experiment is made of (``OUT/<run>/``).
* ``runner``: runs them in one process, skipping finished runs and resuming interrupted ones.
* ``results``: ``results.csv``, ``results.json`` and ``results.md``, with the paper's numbers
  beside the measured ones on the paper's dataset only.
* ``convergence``: the running training error and the rule for a run that has not converged.
* ``figures``: the paper-style figures (PNG and SVG, matplotlib).
* ``paper``: the published numbers.
"""
