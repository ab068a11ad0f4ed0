"""safe-pip: install and run untrusted Python code inside a Linux sandbox.

The package is laid out by architecture: ``policy`` (what is allowed) feeds the
``sandbox`` layers (how the kernel enforces it), which the ``launcher`` applies to a
child process; ``runner`` turns a user's target into an argv; ``cli`` holds the two
commands.  Nothing here is imported eagerly, so ``safe-run`` start-up stays lean.
"""

__version__ = "0.1.0"
