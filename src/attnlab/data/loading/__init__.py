"""Loading machinery shared by the tasks: downloads and checksums, token caches and atomic
writes, LM windows, packing, masking, padding, token budgets, sharding, resumable loaders."""
