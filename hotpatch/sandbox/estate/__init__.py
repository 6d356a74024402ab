"""A seeded, realistic estate of Azure and Arc machines as Resource Graph rows (the raw export).

`mix` says what share of machines has each image, setting, build and fault; `rows` holds the
tables and reads and writes the raw export; `generator` draws an estate from the mix.
"""

from hotpatch.sandbox.estate.generator import EstateSpec, generate_estate
from hotpatch.sandbox.estate.mix import ARC_TOO_OLD_BUILD, CATEGORY_SHARES, HOTPATCH_SKUS
from hotpatch.sandbox.estate.rows import Estate, read_export, split_rows, write_export

__all__ = [
    "ARC_TOO_OLD_BUILD",
    "CATEGORY_SHARES",
    "HOTPATCH_SKUS",
    "Estate",
    "EstateSpec",
    "generate_estate",
    "read_export",
    "split_rows",
    "write_export",
]
