"""Learn mode: watch a sandboxed run from outside and propose the policy it needed.

``syscalls`` says which calls touch paths, ``ptrace`` binds the kernel interface,
``tracer`` runs the watch loop in the supervisor, ``findings`` decides which failed
calls were the sandbox's doing, ``proposal`` turns them into a ``[tool.safe-run]``
table and ``pyproject_edit`` writes that table into the user's file.
"""
