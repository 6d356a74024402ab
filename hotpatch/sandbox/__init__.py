"""The local sandbox: an ARM-compatible HTTPS server and the seeded estate it serves."""
