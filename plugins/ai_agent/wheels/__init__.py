"""Third-party Python packages for an image, from the resolve's pex lock: the target's wheels
chosen as pip would (`target`, `pexlock`), verified and installed flat under a prefix so the
image's interpreter imports them directly (`install`), compiled to bytecode at build time
(`bytecode`) and split into layers that keep big distributions' digests (`plan`).
`python -m ai_agent.wheels` runs the steps.

The standard library and the `[ai-agents-builder]` lock's `packaging` and `installer`, any CPython
>= 3.9, relative imports: the package runs from wherever it is copied, next to its sibling
`ai_agent.oci`.
"""
