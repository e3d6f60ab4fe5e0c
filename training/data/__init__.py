"""Datasets as normalized tensors (digits, MNIST-1D, CIFAR, CIFAR10-DVS, npz) or streamed (ImageNet),
and the tensor loader with on-device augmentation."""
