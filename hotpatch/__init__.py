"""hotpatch: keeps Azure Windows servers on the hotpatch cycle and reports their compliance."""

__version__ = "0.1.0"
