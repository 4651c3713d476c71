"""PASCAL VOC detection scoring, torch-free: ground truth read from ``Annotations/``, results files, AP.

=====================  ==========================================================================
module                 holds
=====================  ==========================================================================
``annotations``        the package's one VOC annotation XML parser (the datasets use it too)
``xml_batch``          its fast path: many plain files parsed at once, equal to the tree parser
``cache``              the on-disk annotation cache (never stale) over the parser
``ground_truth``       a split's ground truth: split file + annotations, class lists, clipping
``results``            the official ``comp4_det_<split>_<class>.txt`` files, written and read
``ap``                 VOC AP equal to the devkit (and to ``voc_eval.py``), vectorised; by area range
``score``              the reported VOC result; results files scored; ``--errors``' analysis
=====================  ==========================================================================

Nothing here imports torch: ``tools/eval.py det`` on results files loads only numpy and these.
The main names are exported by :mod:`visiontasks.evaluation`.
"""
