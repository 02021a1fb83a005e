"""The published numbers the experiments are compared with.

He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385): Table 2 and Table 3 (ImageNet, section 4.1), Table 6 and Figures 6 and 7
(CIFAR-10, section 4.2). The reproduction is the public repository akamaster/pytorch_resnet_cifar10
(its README's table). Each figure is measured on the dataset named here, and a report sets it
beside measured errors only when they come from the same dataset.
"""

from __future__ import annotations

#: He et al. 2015, Table 6: CIFAR-10 test error (%) of ResNet-N (ResNet-110: best of 5 runs).
TABLE6_TEST_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
#: Table 6: ResNet-110 over 5 runs, mean and std (%).
TABLE6_RESNET110_MEAN_STD = (6.61, 0.16)
#: Table 6: parameters (millions).
TABLE6_PARAMS_M = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}
#: A modern reproduction of the section 4.2 recipe (PyTorch; akamaster/pytorch_resnet_cifar10):
#: CIFAR-10 test error (%) of ResNet-20/32/44/56/110/1202.
REPRODUCTION_TEST_ERROR = {20: 8.27, 32: 7.37, 44: 6.90, 56: 6.61, 110: 6.32, 1202: 6.18}
#: Table 3: ImageNet validation top-1 error (%, 10-crop) of ResNet-34 with shortcut A, B, C.
TABLE3_RESNET34_TOP1 = {"A": 25.03, "B": 24.52, "C": 24.19}
#: The depths of Table 6 (CIFAR-10, section 4.2); any other depth is not one of the paper's.
PAPER_CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
#: The datasets the figures were measured on: CIFAR-10 (Table 6, Figures 6 and 7) and
#: ImageNet 2012 with ResNet-34 (Table 3).
TABLE6_DATASET, TABLE3_DATASET, TABLE3_MODEL = "cifar10", "imagenet2012", "resnet34"
#: Table 2: ImageNet top-1 error (%, 10-crop) of the 18- and 34-layer plain and residual nets.
TABLE2_TOP1 = {("plain", 18): 27.94, ("plain", 34): 28.54, ("resnet", 18): 27.88,
               ("resnet", 34): 25.03}

DEGRADATION_NOTE = ("The paper gives the CIFAR-10 plain nets' errors only as curves (Figure 6): "
                    "deeper plain nets have higher training and test error (plain-110: over "
                    "60 %), while deeper ResNets have lower error (Table 6).")
SHORTCUTS_NOTE = ("Table 3 compares the options on ImageNet ResNet-34 (top-1 error, 10-crop): "
                  "B is slightly better than A, C marginally better than B.")
RESPONSES_NOTE = ("Figure 7: ResNets have generally smaller responses than their plain "
                  "counterparts, and the deeper ResNet has smaller responses.")
