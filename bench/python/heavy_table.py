"""A module whose import is a heavy one-time initialisation (the stand-in
for loading a model or a large table): process_start_preload.py preloads
it in the fork server, or each child imports it."""

TABLE_LEN = 1 << 20
TABLE = [((i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> 3 for i in range(TABLE_LEN)]
