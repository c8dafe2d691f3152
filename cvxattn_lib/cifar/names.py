"""Names the command line needs before torch loads (the parser's defaults and choices)."""

DEFAULT_BACKBONE = "gmlp_s16_224"
REDUCTIONS = ("none", "pca", "pool")
SOURCE_REAL = "cifar100"
SOURCE_STANDIN = "synthetic stand-in"
