"""The model zoo: ``build(name, **options)``, ``names()`` and ``model_options(name)``.

Importing this package imports every model family (``digits``, ``conv1d``, ``resnet``, ``vgg``),
each of which registers its factories with :func:`training.models.registry.register`; a new
family is one file here plus its line below. Every model is time-major and returns ``O`` as
``[T, B, num_classes]`` with no neuron on the output layer; the prediction is
``argmax(mean_t O(t))``. Options left at ``None`` take the model's default.
"""

from training.models import conv1d, digits, resnet, vgg  # noqa: F401  (importing registers them)
from training.models.registry import build, model_options, names

__all__ = ["build", "model_options", "names"]
