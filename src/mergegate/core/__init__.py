"""The pure domain model. No I/O here: no files, subprocesses, network or clocks.

Everything else in mergegate may depend on ``core``; ``core`` depends on nothing of ours.
"""
