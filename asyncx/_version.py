"""The one place the version is written: the distribution's metadata, ``asyncx.__version__`` and
``asyncx --version`` all read it."""

__version__ = "0.2.0.dev0"
