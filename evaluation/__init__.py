"""Evaluation of translated images: FID/KID, Cityscapes DRN-D-22 scores, epoch sweeps, result tables.

Every module with a `main` is a command (`python -m evaluation.fid`, `.cityscapes`, `.sweep`,
`.tables`) that shows progress on stderr and prints its result as JSON on stdout. docs/evaluation.md
describes the protocols and where they differ from the upstream snippets.
"""
