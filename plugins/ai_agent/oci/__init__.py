"""A small, dependency-free OCI image library: the part of the plugin that sandboxed build
processes run.

Modelled on go-containerregistry's `pkg/v1`: a few nouns (Descriptor, Platform, Layer, Image,
Index), digests computed once while bytes stream, and I/O kept at the edges. Standard library
only, so it runs under any CPython >= 3.9 that a build process happens to get, and it uses
relative imports so it can be copied anywhere on `sys.path`.
"""
