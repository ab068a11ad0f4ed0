"""Phantom-token credentials: the sandbox holds a stand-in, the proxy the real value."""
