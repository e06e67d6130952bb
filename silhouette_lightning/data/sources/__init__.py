"""The built-in data sets, one file per family; importing this package registers them.

* :mod:`.digits`: ``digits``, scikit-learn's bundled 8x8 digits (the quick start's default);
* :mod:`.synthetic`: ``synthetic``, generated class patterns for tests and smoke runs;
* :mod:`.in_memory`: the base of both, data sets held as one tensor;
* :mod:`.image_folder`: ``imagefolder``, a user's own images in class folders, and reading image files;
* :mod:`.torchvision_sets`: ``cifar10``, ``cifar100``, ``flowers102``, ``stanford_cars``,
  ``fgvc_aircraft``, ``dtd``, ``food101``, ``caltech101``, ``caltech256``, ``oxford_pets``.
"""

# Imported for their registrations (each module registers its data sets on import).
from silhouette_lightning.data.sources import digits, image_folder, synthetic, torchvision_sets  # noqa: F401
