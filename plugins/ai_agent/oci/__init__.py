"""A small, dependency-free OCI image library: the part of the plugin that sandboxed build
processes run.

Modelled on go-containerregistry's `pkg/v1`: a few nouns (Descriptor, Platform, Layer, Image,
Index), digests computed once while bytes stream, and I/O kept at the edges. Standard library
only, so it runs under any CPython >= 3.9 that a build process happens to get, and it uses
relative imports so it can be copied anywhere on `sys.path`.

One concern per module:
- `types`: media types, digests, platforms, descriptors, manifests, canonical JSON;
  `errors`: `OciError`, the root of every error here, and the registry client's errors;
- `layer`: layer tarballs; `image`: images and indexes; `archive`: image archives;
  `layout`: the OCI layout all images share (its index, the blobs it reaches); `export`:
  placing them in `dist/`; `spec`: the JSON specs of the `layer` and `image` commands;
- `name`: image references (no I/O); `auth`: credentials; `limits`: network limits and their
  flags; `connection`: timed HTTP connections; `transport`: connections, auth challenges,
  retries; `remote`: pull; `push`: push;
- `base`: registry base locks; `compare`: where two builds differ;
- `__main__`: the command line (`python -m ai_agent.oci COMMAND`).
"""
