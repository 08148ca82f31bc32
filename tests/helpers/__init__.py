"""Helpers the tests of several folders share (the root conftest keeps only what every test needs).

``REPO`` is the repository root: tools run from it, and the configs are read from it."""
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
