"""AnyPPG-Edge: the command-line face and run-folder utilities shared by the stages."""
__version__ = "0.1.0"
