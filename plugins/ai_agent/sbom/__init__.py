"""SBOM and provenance of images, written beside each image in `dist/` (standard library only:
this package runs inside sandboxed build processes, next to `ai_agent.oci`).

- `spdx.py`: an SPDX 2.3 JSON document per platform image: the image, its base (by digest), every
  Debian package, every wheel, every weight, code and config file, with their relationships.
- `provenance.py`: an in-toto v1 statement with a SLSA provenance v1 predicate whose subject is
  the image's manifest (or index) digest.
- `licenses.py`: what Debian copyright files and Python core metadata declare, as SPDX licence
  expressions.
- `account.py`: every file of every layer of an OCI layout mapped to an SBOM entry or to a named
  generated file (what the tests check).

The facts come from the build steps that already read the bytes (the Debian layer step's
`packages.json`, the wheel layer steps' `installed.json`) and from the rule (digests Pants knows),
through one JSON spec; nothing here reads a .deb, a wheel or a weight file.

Every error this package raises is an `errors.SbomError`.
"""
