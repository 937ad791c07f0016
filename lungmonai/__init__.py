"""lungmonai: lung nodule detection and malignancy estimation in chest CT, built on MONAI."""

__version__ = "0.1.0"
