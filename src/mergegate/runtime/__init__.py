"""What agents and untrusted code run inside: processes with limits, and the sandbox."""
