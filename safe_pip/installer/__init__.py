"""``safe-pip install``: uv, with every step that runs package code inside a sandbox."""
