"""Distroless-style Debian base images built straight from .deb files pinned in a lock: no apt,
no `docker build`, no maintainer scripts, and the same bytes on every machine.

The pipeline, one module per step (each a plain function a build process can run):
`index` (signed indexes: gpgv, Release, Packages) -> `resolve` (the closure, as apt chooses it)
-> `lock` (the JSON lock) -> `fetch` (.debs by sha256 from ordered mirrors) -> `rootfs` (unpack
into layer entries, writing what dpkg and maintainer scripts would) -> `base` (the layer blob and
its descriptor, through `ai_agent.oci.layer`). `python -m ai_agent.debian` runs the steps.

Standard library only (gpgv is needed when a lock is made), any CPython >= 3.9, relative imports:
the package runs from wherever it is copied, next to its sibling `ai_agent.oci`.
"""
