"""The filtering network proxy that runs in the supervisor, outside the sandbox."""
